"""Clients that ask for a value and then read nothing: the resource tests' and
benchmarks/stalled_readers.py's way to hold a server's streams (docs/api.md, Limits)."""

import socket
from urllib.parse import urlsplit


def stalled_reader(url: str, path: str, source: str = "") -> socket.socket:
    """Send ``GET path`` to the server at ``url`` (from address ``source``, if given) and
    return the connection, unread: its receive buffer is as small as the kernel allows, so
    the server's bytes pile up on the server's side.  The caller closes it."""
    parts = urlsplit(url)
    conn = socket.socket()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.settimeout(30)
    if source:
        conn.bind((source, 0))
    conn.connect((parts.hostname or "127.0.0.1", parts.port or 80))
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return conn
