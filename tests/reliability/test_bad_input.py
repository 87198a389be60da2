"""The attacks of issue 9, item 7, replayed: each gets a clear 4xx with a JSON error and
changes nothing; a second process on a data directory in use stops before touching it."""

import socket
import subprocess
import sys
import time

import httpx
import pytest
from cluster import Cluster, run_kittenfs
from rawhttp import raw_request

from kittenfs import batch
from kittenfs.placement import blob_id, new_version

NESTED = b"[" * 100_000


@pytest.mark.parametrize(
    "path",
    [
        "/_workers/register",
        "/_workers/heartbeat",
        "/_workers/corrupt",
        "/_jobs/rebalance",
        "/_jobs/repair",
        "/_jobs/gc",
        "/_workers/0/drain",
    ],
)
def test_deeply_nested_json_gets_400_on_every_control_route(shared: Cluster, path: str) -> None:
    answer = httpx.post(f"{shared.url}{path}", content=NESTED, auth=shared.auth)
    assert answer.status_code == 400 and answer.json()["error"] == "bad_json", answer.text
    assert shared.cluster_info()["jobs"]["running"] is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"grace": NaN}',
        b'{"grace": Infinity}',
        b'{"grace": -Infinity}',
        b'{"grace": 1e999}',
        b'{"rate": NaN}',
        b'{"bandwidth": 1e999}',
    ],
)
def test_job_options_refuse_nan_and_infinities(shared: Cluster, body: bytes) -> None:
    answer = httpx.post(f"{shared.url}/_jobs/gc", content=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] in ("bad_json", "bad_option")
    assert shared.cluster_info()["jobs"]["running"] is None


def test_a_batch_manifest_nested_too_deeply_is_refused(shared: Cluster) -> None:
    head = NESTED
    answer = httpx.post(
        f"{shared.nodes[0].url}/batch",
        content=len(head).to_bytes(4, "big") + head,
        auth=shared.auth,
    )
    assert answer.status_code == 400 and answer.json()["error"] == "bad_batch"


def test_a_batch_with_an_oversized_key_is_refused_whole(shared: Cluster) -> None:
    version = new_version()
    good = batch.PutOp(blob_id("/batch/good", version), "/batch/good", version, b"fine")
    long_key = "/" + "k" * 70_000
    bad = batch.PutOp(blob_id(long_key, version), long_key, version, b"")
    answer = httpx.post(
        f"{shared.nodes[0].url}/batch", content=batch.encode([good, bad]), auth=shared.auth
    )
    assert answer.status_code == 400 and answer.json()["error"] == "bad_batch", answer.text
    assert httpx.get(f"{shared.nodes[0].url}/blob/{good.blob}", auth=shared.auth).status_code == 404


def test_raw_bytes_in_x_kfs_key_get_400(shared: Cluster) -> None:
    version = new_version()
    status, _, content = raw_request(
        shared.nodes[0].url,
        "PUT",
        f"/blob/{blob_id('/x', version)}",
        {
            "X-Kfs-Key": "\xff\xfe",
            "X-Kfs-Version": version,
            **shared.signed("PUT", f"/blob/{blob_id('/x', version)}"),
        },
        b"data",
    )
    assert status == 400 and b"bad_key" in content


def test_a_parser_level_400_logs_one_line_not_a_traceback(shared: Cluster) -> None:
    status, _, content = raw_request(shared.url, "GET", "/x y z", {}, b"")
    assert status == 400 and b'"error"' in content
    deadline = time.monotonic() + 60
    while b"for a request from" not in shared.master.log.read_bytes():
        assert time.monotonic() < deadline, "the 400 was not logged"
        time.sleep(0.1)
    assert b"Traceback" not in shared.master.log.read_bytes()


def test_a_second_worker_on_a_data_dir_in_use_stops_before_touching_it(cluster: Cluster) -> None:
    """The first worker's upload in flight (in tmp/) survives a second process started on
    its directory, which exits at once with a one-line reason."""
    node = cluster.nodes[0]
    version = new_version()
    blob = blob_id("/in-flight", version)
    value = b"v" * 300_000
    host, port = node.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            (
                f"PUT /blob/{blob} HTTP/1.1\r\nHost: x\r\nX-Kfs-Key: %2Fin-flight\r\n"
                f"X-Kfs-Version: {version}\r\nContent-Length: {len(value)}\r\n"
                + "".join(
                    f"{k}: {v}\r\n" for k, v in cluster.signed("PUT", f"/blob/{blob}").items()
                )
                + "\r\n"
            ).encode()
            + value[:200_000]
        )
        tmp = cluster.root / "worker-0" / "tmp"
        deadline = time.monotonic() + 60
        while not any(tmp.iterdir()):
            assert time.monotonic() < deadline, "the upload never reached tmp/"
            time.sleep(0.05)
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "kittenfs",
                "worker",
                "--master",
                cluster.url,
                "--port",
                "0",
                "--data",
                str(cluster.root / "worker-0"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode != 0
        assert "in use by another kittenfs process" in second.stderr, second.stderr
        assert f"pid {node.pid}" in second.stderr
        assert any(tmp.iterdir()), "the second process emptied tmp/"
        conn.sendall(value[200_000:])
        answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 201"), answer
    assert httpx.get(f"{node.url}/blob/{blob}", auth=cluster.auth).content == value


def test_a_second_master_on_a_data_dir_in_use_stops(cluster: Cluster) -> None:
    second = run_kittenfs(
        "master", "--port", "0", "--data", str(cluster.root / "master"), timeout=60
    )
    assert second.returncode != 0 and "in use by another kittenfs process" in second.stderr
    assert httpx.put(f"{cluster.url}/still/works", content=b"yes").status_code == 201
