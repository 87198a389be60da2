"""A worker serving a file-backed value: pieces read and checked on the event loop while
their pages are cached, in a thread when they are not; a bad block found in the first piece
still sends the client back, even when the pre-check was skipped; readers that stop reading
are cut after --send-timeout."""

import os
import time

import httpx
from cluster import Cluster, MakeCluster, wait_until
from pagecache import drop_from_page_cache

from kittenfs.records import BlobHeader
from kittenfs.reliability.stalled import stalled_reader
from kittenfs.worker.blobstore import BLOCK_SIZE, READ_PIECE

MiB = 1024 * 1024


def test_a_value_out_of_the_page_cache_is_served_whole_and_in_ranges(cluster: Cluster) -> None:
    """With every copy's pages evicted before each read, the value and a range across two
    pieces come back exact (the pieces were read and checked in a thread)."""
    value = os.urandom(4 * READ_PIECE + 5)
    key = "/cold/value"
    with httpx.Client(base_url=cluster.url, timeout=60, follow_redirects=True) as http:
        assert http.put(key, content=value).status_code == 201
        files = [cluster.blob_file(node, key) for node in range(len(cluster.nodes))]
        for path in files:
            drop_from_page_cache(path)
        assert http.get(key).content == value
        for path in files:
            drop_from_page_cache(path)
        first, last = READ_PIECE - 10, 2 * READ_PIECE + 10
        part = http.get(key, headers={"Range": f"bytes={first}-{last}"})
        assert part.status_code == 206 and part.content == value[first : last + 1]


def test_a_bad_block_in_the_first_piece_sends_the_client_back(cluster: Cluster) -> None:
    """A value read whole lately skips the pre-check of its next reads; a bad block in the
    first piece must still send the client back to the master (302), not start a 200 that
    is then cut after the good blocks before it."""
    value = os.urandom(3 * MiB)
    key = "/first/piece"
    with httpx.Client(base_url=cluster.url, timeout=60) as http:
        assert http.put(key, content=value).status_code == 201
        link = http.get(key).headers["location"]
        assert httpx.get(link, timeout=60).content == value  # now "recently checked"
        node = next(i for i, n in enumerate(cluster.nodes) if link.startswith(n.url + "/"))
        path = cluster.blob_file(node, key)
        offset = BlobHeader.unpack(path.read_bytes()[:2000]).data_offset + 3 * BLOCK_SIZE
        with path.open("r+b") as handle:
            handle.seek(offset)
            handle.write(bytes([value[3 * BLOCK_SIZE] ^ 0xFF]))
        answer = httpx.get(link, timeout=60)
        assert answer.status_code == 302, answer.status_code
        assert answer.headers["x-kfs-error"] == "corrupt"


def test_readers_that_stop_reading_a_worker_are_cut(make_cluster: MakeCluster) -> None:
    """40 readers that take nothing of a 24 MiB value from a worker with --send-timeout 2:
    every connection is cut within seconds, and the value still reads whole."""
    cluster = make_cluster(worker_args=["--send-timeout", "2"], master_args=["--cache-bytes", "0"])
    value = os.urandom(24 * MiB)
    key = "/stalled/value"
    assert httpx.put(f"{cluster.url}{key}", content=value, timeout=120).status_code == 201
    link = httpx.URL(httpx.get(f"{cluster.url}{key}").headers["location"])
    node = next(node for node in cluster.nodes if str(link).startswith(node.url + "/"))
    worker = node.pid
    base = len(os.listdir(f"/proc/{worker}/fd"))
    readers = [stalled_reader(node.url, f"{link.path}?{link.query.decode()}") for _ in range(40)]
    started = time.monotonic()
    try:
        wait_until(
            lambda: len(os.listdir(f"/proc/{worker}/fd")) <= base + 5,
            "the worker to cut every stalled reader",
            timeout=60,
        )
    finally:
        for conn in readers:
            conn.close()
    assert time.monotonic() - started < 45
    assert httpx.get(str(link), timeout=60).content == value
