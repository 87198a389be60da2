"""TLS: the SSL contexts of servers and clients (localca.py makes a CA for ``kittenfs up --tls``).

A master or worker given ``--tls-cert``/``--tls-key`` serves HTTPS only.  Whatever talks to
one (the master to its workers, a worker to its master, clients) checks its certificate
against the CA given with ``--ca`` (or the system's CAs without it), host name included.
"""

import ssl
from pathlib import Path

from .config import TLS


def server_context(files: TLS) -> ssl.SSLContext | None:
    """Return the context of a server presenting ``files.cert`` (PEM, chain first) with
    ``files.key``; None if it serves plain HTTP."""
    if files.cert is None or files.key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    return context


def client_context(ca: Path | None) -> ssl.SSLContext:
    """Return the context of a client that trusts ``ca`` (PEM), or the system's CAs."""
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
