"""The master's front (front.py, master/fast_path.py): the hot key routes answered on the
front, everything else handed with its connection to aiohttp, on one keep-alive connection
as on many; errors in JSON either way.  The limits on heads and idle connections are
tested against the master in tests/reliability/test_limits.py."""

import json
import os
import select
import socket
from urllib.parse import urlsplit

import httpx
import pytest
from cluster import Cluster, MakeCluster


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def read_answers(
    conn: socket.socket, count: int, heads: tuple[int, ...] = ()
) -> list[tuple[int, dict[str, str], bytes]]:
    """Read ``count`` answers (each framed by its Content-Length; those numbered in
    ``heads`` answer a HEAD, and have no body) from a keep-alive connection."""
    data = b""
    answers: list[tuple[int, dict[str, str], bytes]] = []
    while len(answers) < count:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            chunk = conn.recv(65536)
            assert chunk, f"closed after {len(answers)} answers: {data!r}"
            data += chunk
            continue
        status_line, *lines = data[:end].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if len(answers) in heads else int(headers.get("content-length", "0"))
        while len(data) < end + 4 + length:
            chunk = conn.recv(65536)
            assert chunk, "closed mid-body"
            data += chunk
        answers.append((int(status_line.split()[1]), headers, data[end + 4 : end + 4 + length]))
        data = data[end + 4 + length :]
    assert not data, f"more than {count} answers: {data!r}"
    return answers


def request(method: str, path: str, body: bytes = b"", *extra: str) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: x", *extra]
    if body or method == "PUT":
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_pipelined_key_requests_on_one_connection_are_answered_in_order(shared: Cluster) -> None:
    with httpx.Client(base_url=shared.url, timeout=30) as http:
        for i in range(3):
            assert http.put(f"/front/pipe/{i}", content=b"v%d" % i).status_code == 201
    with connect(shared.url) as conn:
        conn.sendall(
            b"".join(
                [
                    request("GET", "/front/pipe/0"),
                    request("HEAD", "/front/pipe/1"),
                    request("DELETE", "/front/pipe/2"),
                    request("GET", "/front/pipe/2"),
                    request("DELETE", "/front/pipe/2"),
                ]
            )
        )
        answers = read_answers(conn, 5, heads=(1,))
    assert [status for status, _, _ in answers] == [200, 200, 204, 404, 404]
    (_, got, body), (_, head, head_body) = answers[0], answers[1]
    assert body == b"v0" and got["etag"].strip('"') == got["content-md5"]
    assert head["content-length"] == "2" and head_body == b""  # a HEAD announces, sends none
    assert answers[3][1]["x-kfs-error"] == "not_found" and answers[3][2] == b""
    assert json.loads(answers[4][2])["error"] == "not_found"
    assert all("date" in headers for _, headers, _ in answers)


def test_a_connection_handed_to_aiohttp_keeps_serving_every_route(shared: Cluster) -> None:
    """A PUT (which has a body) and a route that is not a key go to aiohttp, mid-connection;
    the requests after them on that connection are answered there."""
    with connect(shared.url) as conn:
        conn.sendall(request("GET", "/front/handed"))
        assert read_answers(conn, 1)[0][0] == 404  # answered on the front
        conn.sendall(request("PUT", "/front/handed", b"hello") + request("GET", "/health"))
        put, health = read_answers(conn, 2)
        assert put[0] == 201 and health[0] == 200
        conn.sendall(request("GET", "/front/handed") + request("DELETE", "/front/handed"))
        got, deleted = read_answers(conn, 2)
    assert got[0] == 200 and got[2] == b"hello" and deleted[0] == 204


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /front/x HTTP/1.0\r\n\r\n",  # an old client
        b"GET /front/x?direct HTTP/1.1\r\nHost: x\r\n\r\n",  # a query
        b"DELETE /front/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
)
def test_requests_the_front_does_not_take_are_answered_by_aiohttp(
    shared: Cluster, raw: bytes
) -> None:
    with connect(shared.url) as conn:
        conn.sendall(raw)
        [(status, headers, body)] = read_answers(conn, 1)
    assert status == 404, (status, body)
    assert headers.get("x-kfs-error") == "not_found" or json.loads(body)["error"] == "not_found"


def test_connection_close_is_honoured(shared: Cluster) -> None:
    with connect(shared.url) as conn:
        conn.sendall(request("GET", "/front/closed", b"", "Connection: close"))
        [(status, headers, _)] = read_answers(conn, 1)
        assert status == 404 and headers["connection"] == "close"
        assert conn.recv(1) == b""


def test_nothing_after_a_connection_close_request_is_done(make_cluster: MakeCluster) -> None:
    """A DELETE pipelined after ``Connection: close`` is never run, even while the answer
    before it is still being sent (a client slow to read keeps the connection open)."""
    cluster = make_cluster(master_args=["--cache-value-max", "16MiB", "--cache-bytes", "64MiB"])
    value = os.urandom(8 * 1024 * 1024)  # cached: answered whole, on the front
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        assert http.put("/front/after-close", content=value).status_code == 201
        assert http.get("/front/after-close").content == value
        with connect(cluster.url) as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # no autotuning
            conn.sendall(
                request("GET", "/front/after-close", b"", "Connection: close")
                + request("DELETE", "/front/after-close")
            )
            # Wait for the answer to start (the master has taken the GET, and would have
            # taken the DELETE right after it), then read it: until it is read whole, most
            # of it waits in the master, and the connection stays open.
            readable, _, _ = select.select([conn], [], [], 60)
            assert readable, "no answer within 60 s"
            [(status, headers, body)] = read_answers(conn, 1)
            assert status == 200 and body == value and headers["connection"] == "close"
            assert conn.recv(1) == b""
        assert http.get("/front/after-close").content == value  # the DELETE never ran


def test_a_garbled_request_gets_aiohttps_json_400(shared: Cluster) -> None:
    with connect(shared.url) as conn:
        conn.sendall(b"GET /front/x HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert data.split(b" ", 2)[1] == b"400", data
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"] == "bad_request"


def test_the_front_counts_what_it_answers_in_the_metrics(shared: Cluster) -> None:
    with httpx.Client(base_url=shared.url, timeout=30) as http:
        assert http.put("/front/counted", content=b"x").status_code == 201

        def deleted() -> float:
            text = http.get("/metrics").text
            series = 'kittenfs_requests_total{method="DELETE",route="key",status="204"}'
            lines = [line for line in text.splitlines() if line.startswith(series)]
            return float(lines[0].split()[-1]) if lines else 0.0

        before = deleted()
        assert http.delete("/front/counted").status_code == 204
        assert deleted() == before + 1


def test_auth_on_the_front_as_on_every_route(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(token="front-admin-token")
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        admin = cluster.headers
        assert http.put("/front/auth", content=b"secret", headers=admin).status_code == 201
        anonymous = http.get("/front/auth")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == "unauthorized"
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = http.delete("/front/auth", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "bad_credentials"
        made = http.post("/_keys", json={"role": "read", "prefix": "/front/"}, headers=admin).json()
        reader = {"Authorization": f"Bearer {made['token']}"}
        assert http.get("/front/auth", headers=reader).content == b"secret"
        refused = http.delete("/front/auth", headers=reader)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        assert http.get("/front/auth", headers=admin).status_code == 200  # still there
        assert http.delete("/front/auth", headers=admin).status_code == 204


def test_the_front_serves_tls(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(tls=True)
    with httpx.Client(base_url=cluster.url, timeout=30, verify=cluster.verify) as http:
        assert http.put("/front/tls", content=b"x" * 100).status_code == 201
        assert http.get("/front/tls").content == b"x" * 100  # the front
        assert http.get("/health").status_code == 200  # handed over, under TLS
        assert http.delete("/front/tls").status_code == 204
