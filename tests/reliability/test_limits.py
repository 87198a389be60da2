"""The enforced limits: slow heads (slowloris), idle connections, stalled bodies, concurrent
uploads per client and overall, and the HTTP parser's rejections answered in JSON.

One module-scoped cluster whose master has short timeouts and tiny upload limits; the
uploads it holds open are closed by each test, so the next starts with free slots."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cluster import Cluster, MakeCluster

from kittenfs.reliability.stalled import stalled_reader

HEADER_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0
BODY_TIMEOUT = 1.0
#: Seconds without a heartbeat before the master calls a worker down (shorter than the
#: clusters' default, so a window longer than it is short enough to wait out).
DOWN_AFTER = 2.0


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(
        tmp_path_factory.mktemp("limits"),
        master_args=[
            "--header-timeout",
            str(HEADER_TIMEOUT),
            "--idle-timeout",
            str(IDLE_TIMEOUT),
            "--body-timeout",
            str(BODY_TIMEOUT),
            "--max-uploads",
            "3",
            "--max-uploads-per-client",
            "2",
            "--down-after",
            str(DOWN_AFTER),
        ],
    )
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def connect(url: str, source: str = "127.0.0.1") -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=15, source_address=(source, 0))


def read_all(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def answer(data: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Return the status, headers and JSON body of one raw HTTP response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    return int(lines[0].split()[1]), headers, json.loads(body)


@contextmanager
def held_upload(url: str, key: str, source: str = "127.0.0.1") -> Iterator[socket.socket]:
    """An upload whose head has arrived and whose body is still coming (a slow client: a
    byte every BODY_TIMEOUT / 4, so the body timeout never cuts it however long the test
    takes on a loaded machine), until the block ends."""
    conn = connect(url, source)
    conn.sendall(
        f"PUT {key} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode() + b"x" * 1000
    )
    done = threading.Event()

    def trickle() -> None:
        while not done.wait(BODY_TIMEOUT / 4):  # the slow client's pace, part of the test
            try:
                conn.sendall(b"x")
            except OSError:
                return

    pacer = threading.Thread(target=trickle, daemon=True)
    pacer.start()
    try:
        time.sleep(0.3)  # the server reads the head: nothing shows that but another upload
        yield conn
    finally:
        done.set()
        pacer.join()
        conn.close()


def test_a_head_sent_a_byte_at_a_time_gets_408_and_is_closed(limited: Cluster) -> None:
    conn = connect(limited.url)
    started = time.monotonic()
    data = b""
    for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
        try:
            conn.sendall(bytes([byte]))
        except OSError:
            break  # the server closed the connection: read what it said
        time.sleep(0.05)
        if time.monotonic() - started > 8:
            pytest.fail("the slow head was never cut off")
    data = read_all(conn)
    status, headers, body = answer(data)
    assert status == 408 and body["error"] == "header_timeout", body
    assert headers["connection"] == "close"
    assert time.monotonic() - started < HEADER_TIMEOUT + 3


def test_many_slow_heads_do_not_stop_other_clients(limited: Cluster) -> None:
    with ExitStack() as stack:
        slow = [stack.enter_context(connect(limited.url)) for _ in range(200)]
        for conn in slow:
            conn.sendall(b"GET /health HTTP/1.1\r\nHo")
        with httpx.Client(base_url=limited.url, timeout=5) as http:
            for _ in range(20):
                assert http.get("/health").status_code == 200
        deadline = time.monotonic() + HEADER_TIMEOUT + 5
        for conn in slow:
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            assert answer(read_all(conn))[0] == 408


def test_an_idle_connection_is_closed_after_the_idle_timeout(limited: Cluster) -> None:
    with connect(limited.url) as never_asks, connect(limited.url) as asked_once:
        asked_once.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert asked_once.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert never_asks.recv(1) == b""  # closed, with nothing said: it asked nothing
        assert read_all(asked_once) == b""
        assert IDLE_TIMEOUT - 0.5 < time.monotonic() - started < IDLE_TIMEOUT + 5


@pytest.mark.parametrize("size", [1000, 1_000_000])  # the batched path and the streamed one
def test_a_stalled_body_gets_408_stores_nothing_and_frees_the_key(
    limited: Cluster, size: int
) -> None:
    key = f"/stalled/{size}"
    with connect(limited.url) as conn:
        conn.sendall(
            f"PUT {key} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
            + b"x" * (size // 2)
        )
        started = time.monotonic()
        status, _, body = answer(read_one(conn))
    assert status == 408 and body["error"] == "body_timeout", body
    assert time.monotonic() - started < BODY_TIMEOUT + 5
    with httpx.Client(base_url=limited.url, timeout=5, follow_redirects=True) as http:
        assert http.head(key).status_code == 404
        assert http.put(key, content=b"whole").status_code == 201  # the key's lock is free
        assert http.get(key).content == b"whole"


def test_uploads_past_the_per_client_limit_get_429(limited: Cluster) -> None:
    with held_upload(limited.url, "/held/1"), held_upload(limited.url, "/held/2"):
        refused = httpx.put(f"{limited.url}/held/3", content=b"v", timeout=5)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "too_many_uploads_from_client"
        assert refused.headers["Retry-After"] == "1"
        # Reads, and uploads from another address, are not this client's uploads.
        assert httpx.get(f"{limited.url}/health", timeout=5).status_code == 200
        with held_upload(limited.url, "/held/4", source="127.0.0.2"):
            with connect(limited.url, source="127.0.0.3") as other:
                other.sendall(b"PUT /held/5 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv")
                status, headers, body = answer(read_one(other))
            assert status == 503 and body["error"] == "too_many_uploads", body
            assert headers["retry-after"] == "1"
            # Heartbeats are not uploads: the workers stay up while every slot is taken
            # (for longer than --down-after: the window is what is tested).
            time.sleep(DOWN_AFTER + 0.5)
            assert all(w["state"] == "up" for w in limited.cluster_info()["workers"])
    # The held uploads end (400, the client went away) and free their slots.
    deadline = time.monotonic() + 60
    while (again := httpx.put(f"{limited.url}/held/3", content=b"v", timeout=5)).status_code in (
        429,
        503,
    ):
        assert time.monotonic() < deadline, again.text
        time.sleep(0.1)
    assert again.status_code == 201


def read_one(conn: socket.socket) -> bytes:
    """Read one response whose connection the server keeps open (no Connection: close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    "raw",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # request line too long
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",  # header too long
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(200))
        + b"\r\n",
        b"PUT /k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
    ],
)
def test_requests_the_parser_rejects_get_a_json_400(limited: Cluster, raw: bytes) -> None:
    for url in (limited.url, limited.nodes[0].url):
        with connect(url) as conn:
            conn.sendall(raw)
            status, headers, body = answer(read_all(conn))
        assert status == 400, body
        assert headers["content-type"].startswith("application/json")
        assert body["error"] == "bad_request" and body["detail"], body


@pytest.mark.parametrize(
    "flag",
    [
        "--header-timeout",
        "--idle-timeout",
        "--body-timeout",
        "--max-uploads",
        "--max-uploads-per-client",
    ],
)
def test_a_limit_that_is_not_positive_is_refused_at_start(tmp_path: Path, flag: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kittenfs",
            "master",
            "--data",
            str(tmp_path),
            "--port",
            "0",
            flag,
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and f"{flag} 0: must be positive" in done.stderr


def test_one_client_address_cannot_hold_every_stream(make_cluster: MakeCluster) -> None:
    """With room for 4 streams, one address may hold 2: its third waits, then gets 429,
    while another address is served at once."""
    cluster = make_cluster(
        master_args=["--stream-buffer-bytes", str(1024 * 1024), "--cache-bytes", "0"]
    )
    value = os.urandom(8 * 1024 * 1024)
    assert httpx.put(f"{cluster.url}/streams", content=value, timeout=60).status_code == 201
    held = [stalled_reader(cluster.url, "/streams?direct") for _ in range(2)]
    try:
        started = time.monotonic()
        with httpx.Client(
            transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=60
        ) as other:
            got = other.get(f"{cluster.url}/streams?direct")
        assert got.status_code == 200 and got.content == value
        assert time.monotonic() - started < 8  # no wait for room: the other address had some
        third = stalled_reader(cluster.url, "/streams?direct")
        try:
            status, headers, body = answer(read_all(third))
        finally:
            third.close()
        assert status == 429 and body["error"] == "too_many_streams_from_client"
        assert headers["retry-after"] == "2"
    finally:
        for conn in held:
            conn.close()


def test_a_slow_reader_that_keeps_reading_is_not_cut_off(make_cluster: MakeCluster) -> None:
    """--send-timeout bounds a pause, not a whole piece: a reader taking 16 KiB every 0.1 s
    from a worker with --send-timeout 2 reads a 1.5 MiB value to the end (1 MiB pieces at
    that pace would take 6.5 s each)."""
    cluster = make_cluster(worker_args=["--send-timeout", "2"], master_args=["--cache-bytes", "0"])
    value = os.urandom(1536 * 1024)
    assert httpx.put(f"{cluster.url}/slow", content=value, timeout=60).status_code == 201
    link = urlsplit(httpx.get(f"{cluster.url}/slow").headers["location"])
    conn = socket.socket()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    conn.settimeout(30)
    conn.connect((link.hostname, link.port))
    conn.sendall(f"GET {link.path}?{link.query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    try:
        while len(data) < len(value) + 200:
            chunk = conn.recv(16384)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and len(data.partition(b"\r\n\r\n")[2]) == len(value):
                break
            time.sleep(0.1)
    finally:
        conn.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == value
