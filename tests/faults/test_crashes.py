"""Faults with real processes: kill -9 of workers and of the master, cut uploads, races."""

import hashlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from cluster import Cluster, MakeCluster, Proc

from kittenfs.master.garbage import REPLACED_GRACE

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.1) -> T:
    """Return the first truthy value of ``predicate()``; fail if none within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def body_signalling(victim: Proc, sig: int, at: int, chunks: int) -> Iterator[bytes]:
    """Yield ``chunks`` random 256 KiB chunks of an upload, sending ``sig`` to ``victim``
    just before chunk ``at``: a fault in the middle of the stream."""
    for i in range(chunks):
        if i == at:
            victim.kill(sig)
        yield os.urandom(256 * 1024)


def holds_only(cluster: Cluster, node: Proc, md5: str) -> bool:
    return [b["md5"] for b in cluster.worker_blobs(node)] == [md5]


def blob_counts(cluster: Cluster) -> list[int]:
    return [len(cluster.worker_blobs(node)) for node in cluster.nodes]


def test_worker_kill9_and_restart_keeps_index_and_data(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=["--cache-bytes", "0"])  # every read goes to a replica
    http = httpx.Client(base_url=cluster.url, follow_redirects=True, timeout=30)
    values = {f"/w/{i}": os.urandom(100 + i * 5000) for i in range(20)}
    for key, value in values.items():
        assert http.put(key, content=value).status_code == 201
    victim = cluster.nodes[1]
    before = {w["url"]: w["index"] for w in cluster.cluster_info()["workers"]}
    victim.kill(signal.SIGKILL)
    index = before[victim.url]
    cluster.wait_worker_state(index, "down")
    for key, value in values.items():  # reads go to the live replicas
        assert http.get(key).content == value
    put = http.put("/w/while-down", content=b"x")  # 3 replicas needed, 2 up: refused cleanly
    assert put.status_code == 503 and put.json()["error"] == "not_enough_workers"
    assert http.head("/w/while-down").status_code == 404
    victim.start()
    cluster.wait_worker_state(index, "up")
    after = {w["url"]: w["index"] for w in cluster.cluster_info()["workers"]}
    assert after[victim.url] == index and len(after) == 3
    assert len(cluster.worker_blobs(victim)) == len(values)
    for key, value in values.items():
        assert httpx.get(cluster.blob_url(key, node=1), auth=cluster.auth).content == value
    assert http.put("/w/after", content=b"y").status_code == 201


def test_master_kill9_during_writes_loses_no_acknowledged_write(cluster: Cluster) -> None:
    acked: dict[str, bytes] = {}
    attempted: dict[str, bytes] = {}
    stop = threading.Event()

    def writer(worker: int) -> None:
        with httpx.Client(base_url=cluster.url, timeout=10) as http:
            for i in range(100_000):
                if stop.is_set():
                    return
                key, value = f"/m/{worker}/{i}", os.urandom(64 + (i % 7) * 30_000)
                attempted[key] = value
                try:
                    if http.put(key, content=value).status_code == 201:
                        acked[key] = value
                except httpx.HTTPError:
                    time.sleep(0.05)  # a client's pause before it retries

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(acked) >= 40, timeout=60)
        cluster.master.kill(signal.SIGKILL)
        killed_at = len(acked)
        time.sleep(0.3)  # the master stays down a moment: part of the fault
        cluster.master.start()
        wait_until(lambda: len(acked) >= killed_at + 20, timeout=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    http = httpx.Client(base_url=cluster.url, follow_redirects=True, timeout=30)
    for key, value in acked.items():
        response = http.get(key)
        assert response.status_code == 200, key
        assert response.content == value, key
    listed = set(http.get("/?list&limit=10000").json()["keys"])
    assert set(acked) <= listed
    for key in listed - set(acked):  # committed just before the crash, never acknowledged
        assert http.get(key).content == attempted[key]
    assert http.get("/?unlinked").json()["keys"] == []
    # Copies of writes the crash cut off are removed: each worker ends with one blob per key.
    wait_until(lambda: blob_counts(cluster) == [len(listed)] * 3, timeout=60)


def test_client_disconnect_mid_upload_stores_nothing(cluster: Cluster) -> None:
    host, port = urlsplit(cluster.url).hostname, urlsplit(cluster.url).port
    with socket.create_connection((host, port)) as sock:
        sock.sendall(b"PUT /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n")
        sock.sendall(os.urandom(2 * 1024 * 1024))
        time.sleep(0.3)  # the client pauses mid-body, then goes away: the fault
    http = httpx.Client(base_url=cluster.url)
    wait_until(lambda: blob_counts(cluster) == [0, 0, 0])
    assert http.head("/cut").status_code == 404
    assert http.get("/?list").json() == {"keys": [], "next": ""}
    for node in range(3):
        assert list((cluster.root / f"worker-{node}" / "tmp").iterdir()) == []
    assert http.put("/cut", content=b"whole").status_code == 201  # the key is not stuck


def test_worker_killed_mid_upload_fails_the_write_cleanly(cluster: Cluster) -> None:
    http = httpx.Client(base_url=cluster.url, timeout=60)
    http.put("/big", content=b"old value")
    victim = cluster.nodes[2]
    response = http.put("/big", content=body_signalling(victim, signal.SIGKILL, 8, 64))
    assert response.status_code == 503
    assert response.json()["error"] in ("replica_failed", "not_enough_workers")
    assert http.get("/big", follow_redirects=True).content == b"old value"
    victim.start()
    cluster.wait_workers_up(3)
    wait_until(lambda: blob_counts(cluster) == [1, 1, 1])


def test_concurrent_writers_to_one_key_serialize(cluster: Cluster) -> None:
    values = [os.urandom(1000 + n) for n in range(24)]
    statuses: list[int] = []

    def write(value: bytes) -> None:
        with httpx.Client(base_url=cluster.url, timeout=30) as http:
            statuses.append(http.put("/race", content=value).status_code)

    threads = [threading.Thread(target=write, args=(v,)) for v in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] + [204] * (len(values) - 1)
    http = httpx.Client(base_url=cluster.url, follow_redirects=True)
    final = http.get("/race").content
    assert final in values
    md5 = hashlib.md5(final).hexdigest()
    for node in cluster.nodes:  # every replica holds the final version and nothing else
        wait_until(
            partial(holds_only, cluster, node, md5),
            timeout=REPLACED_GRACE + 10,
        )  # the replaced versions wait out their grace


def test_large_value_streams_with_bounded_master_memory(cluster: Cluster) -> None:
    size = 192 * 1024 * 1024
    chunk = os.urandom(1024 * 1024)
    digest = hashlib.md5()

    def body() -> Iterator[bytes]:
        for _ in range(size // len(chunk)):
            digest.update(chunk)
            yield chunk

    with httpx.Client(base_url=cluster.url, timeout=120) as http:
        response = http.put("/huge", content=body(), headers={"Content-Length": str(size)})
        assert response.status_code == 201
        assert response.headers["etag"] == f'"{digest.hexdigest()}"'
        assert http.head("/huge").headers["content-length"] == str(size)
        received = hashlib.md5()
        total = 0
        with http.stream("GET", "/huge", params={"direct": ""}) as stream:
            for part in stream.iter_raw(1024 * 1024):
                received.update(part)
                total += len(part)
        assert total == size and received.hexdigest() == digest.hexdigest()
    peak_mib = cluster.master.rss_peak_kib() / 1024
    print(f"master peak RSS {peak_mib:.1f} MiB")
    assert peak_mib < 96, f"master peak RSS {peak_mib:.0f} MiB for a {size >> 20} MiB value"


def test_direct_read_cut_mid_stream_is_an_error_not_a_wrong_200(cluster: Cluster) -> None:
    size = 48 * 1024 * 1024
    with httpx.Client(base_url=cluster.url, timeout=60) as http:
        assert http.put("/cutread", content=os.urandom(size)).status_code == 201
        with (
            pytest.raises(httpx.HTTPError),
            http.stream("GET", "/cutread", params={"direct": ""}) as stream,
        ):
            assert stream.status_code == 200
            received = 0
            for part in stream.iter_raw(256 * 1024):
                received += len(part)
                if received >= 4 * 1024 * 1024 and cluster.nodes[0].alive():
                    for node in cluster.nodes:  # whichever replica serves, it dies now
                        node.kill(signal.SIGKILL)
                    time.sleep(0.5)  # the reader pauses while the replicas die
        assert received < size


def test_a_stalled_worker_fails_the_write_instead_of_hanging(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=["--replica-timeout", "2"])
    http = httpx.Client(base_url=cluster.url, timeout=60)
    assert http.put("/stall", content=b"before").status_code == 201
    victim = cluster.nodes[0]
    started = time.monotonic()
    try:
        response = http.put("/stall", content=body_signalling(victim, signal.SIGSTOP, 4, 200))
    finally:
        victim.kill(signal.SIGCONT)
    assert response.status_code == 503
    assert response.json()["error"] in ("replica_stalled", "replica_failed")
    assert time.monotonic() - started < 20
    assert http.get("/stall", follow_redirects=True).content == b"before"
    wait_until(lambda: blob_counts(cluster) == [1, 1, 1], timeout=60)


def test_a_worker_paused_after_the_whole_body_fails_the_write(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=["--replica-timeout", "60"])
    http = httpx.Client(base_url=cluster.url, timeout=60)
    victim = cluster.nodes[1]
    sent = []

    def body() -> Iterator[bytes]:
        for i in range(12):
            yield os.urandom(256 * 1024)
            sent.append(i)
        victim.kill(signal.SIGSTOP)  # the master holds the whole body; the worker stops

    started = time.monotonic()
    try:
        response = http.put("/paused", content=body())
    finally:
        victim.kill(signal.SIGCONT)
    assert response.status_code == 503, response.text
    assert time.monotonic() - started < 20  # down_after (2 s) ends it, not the 60 s timeout
    assert http.head("/paused").status_code == 404
    cluster.wait_workers_up(3)
    wait_until(lambda: blob_counts(cluster) == [0, 0, 0], timeout=60)
