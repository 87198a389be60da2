"""Hostile input, property-based (hypothesis): random raw paths, percent-encodings, methods,
headers and ranges against a real master and worker.  No crash, no 5xx, every 4xx a JSON
error (except the documented empty 404 of GET/HEAD), and nothing stored is changed."""

import hashlib
import json
import socket

import httpx
import pytest
from cluster import Cluster
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawhttp import raw_request

METHODS = ["GET", "HEAD", "PUT", "DELETE", "UNLINK", "POST", "PATCH", "OPTIONS", "PROPFIND"]
SAFE_METHODS = ["GET", "HEAD", "OPTIONS", "PATCH", "PROPFIND", "POST"]
PATH_CHARS = st.sampled_from(
    [*list("/ab%2F5Fe._-~?&=#;:@!$'()*+,"), "%00", "%ff", "%", "%e2%82%ac", "..", "//"]
)
RANGES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "bytes=0-0",
            "bytes=-1",
            "bytes=5-",
            "bytes=9-2",
            "bytes=0-1,3-4",
            "bytes=x-y",
            "items=0-1",
            "bytes=99999999999999999999999999-",
            "bytes=-0",
            "bytes=",
        ]
    ),
)

settings.register_profile(
    "kfs",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.load_profile("kfs")


@pytest.fixture(scope="module")
def stored(shared: Cluster) -> dict[str, bytes]:
    values = {"/keep/a": b"alpha" * 1000, "/keep/b": b"", "/keep/c": bytes(range(256)) * 400}
    with httpx.Client(base_url=shared.url, timeout=30) as http:
        for key, value in values.items():
            assert http.put(key, content=value).status_code in (201, 204)
    return values


def assert_sane(status: int, headers: dict[str, str], content: bytes, method: str) -> None:
    assert status < 500, (status, content[:300])
    bare_miss = status == 404 and method in ("GET", "HEAD") and not content
    if status >= 400 and not bare_miss and method != "HEAD":
        body = json.loads(content)
        assert isinstance(body.get("error"), str), body


@given(
    method=st.sampled_from(SAFE_METHODS),
    path=st.lists(PATH_CHARS, max_size=12),
    range_header=RANGES,
    direct=st.booleans(),
)
def test_random_requests_to_the_master_are_answered_sanely(
    shared: Cluster,
    stored: dict[str, bytes],
    method: str,
    path: list[str],
    range_header: str | None,
    direct: bool,
) -> None:
    raw = "/" + "".join(path)
    headers = {"Range": range_header} if range_header else {}
    if direct:
        headers["X-Kfs-Direct"] = "1"
    status, fields, content = raw_request(shared.url, method, raw, headers, b"")
    assert_sane(status, fields, content, method)


@given(
    method=st.sampled_from(METHODS),
    suffix=st.lists(PATH_CHARS, max_size=8),
    body=st.binary(max_size=2000),
)
def test_random_writes_under_a_scratch_prefix_never_touch_other_keys(
    shared: Cluster, stored: dict[str, bytes], method: str, suffix: list[str], body: bytes
) -> None:
    raw = "/scratch/" + "".join(suffix).replace("?", "").replace("#", "")
    status, fields, content = raw_request(shared.url, method, raw, {}, body)
    assert_sane(status, fields, content, method)
    with httpx.Client(base_url=shared.url, timeout=30, follow_redirects=True) as http:
        for key, value in stored.items():
            got = http.get(key)
            assert got.status_code == 200 and got.content == value, key


@given(
    method=st.sampled_from(METHODS),
    tail=st.text(max_size=80),
    range_header=RANGES,
    signed=st.booleans(),
)
def test_random_requests_to_a_worker_are_answered_sanely(
    shared: Cluster, method: str, tail: str, range_header: str | None, signed: bool
) -> None:
    """Signed as the master signs (so the routes behind the guard are reached) or not."""
    raw = "/" + "".join(
        c if c.isascii() and c.isprintable() and c != " " else f"%{ord(c) % 256:02x}" for c in tail
    )
    headers = {"Range": range_header} if range_header else {}
    if signed:
        headers.update(shared.signed(method, raw))
    status, fields, content = raw_request(shared.nodes[0].url, method, raw, headers, b"")
    assert_sane(status, fields, content, method)


def test_stored_values_survived_the_fuzzing(shared: Cluster, stored: dict[str, bytes]) -> None:
    with httpx.Client(base_url=shared.url, timeout=30, follow_redirects=True) as http:
        for key, value in stored.items():
            got = http.get(key, params={"direct": ""})
            assert got.content == value
            assert got.headers["content-md5"] == hashlib.md5(value).hexdigest()


@pytest.mark.parametrize(
    ("headers", "body", "statuses"),
    [
        ({"X-Big": "a" * 20_000}, b"", (400,)),  # a header over the 8190-byte limit
        ({f"X-{i}": "v" for i in range(200)}, b"", (400,)),  # over the 128-header limit
        ({"Content-Length": "5"}, b"", None),  # a body cut short: the client leaves
    ],
)
def test_oversized_and_truncated_requests_are_refused_cleanly(
    shared: Cluster,
    stored: dict[str, bytes],
    headers: dict[str, str],
    body: bytes,
    statuses: tuple[int, ...] | None,
) -> None:
    host, port = shared.url.removeprefix("http://").split(":")
    head = "PUT /scratch/hostile HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if "Content-Length" not in headers:
        head += "Content-Length: 0\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall((head + "\r\n").encode() + body)
        if statuses is None:
            conn.shutdown(socket.SHUT_WR)  # half the body never comes
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    if statuses is not None:
        assert int(data.split()[1]) in statuses, data[:200]
        assert json.loads(data.partition(b"\r\n\r\n")[2])["error"], data[:300]
    with httpx.Client(base_url=shared.url, timeout=30, follow_redirects=True) as http:
        assert http.head("/scratch/hostile").status_code == 404  # nothing half-stored
        for key, value in stored.items():
            assert http.get(key).content == value
