"""A worker serving a file-backed value: each span checked, then sent with sendfile(2).

The spans are checked on the event loop while their pages are cached, in a thread when they
are not; a reader that stops reading is cut after --send-timeout, whichever way the bytes
go; the bytes-out metric counts what sendfile sent.
"""

import os
import time
from pathlib import Path

import httpx
from cluster import Cluster, MakeCluster, wait_until

from kittenfs.reliability.stalled import stalled_reader
from kittenfs.worker.serve import SEND_SPAN

MiB = 1024 * 1024


def evict(path: Path) -> None:
    """Drop a blob file's pages from the page cache (they are clean: it was fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_a_value_out_of_the_page_cache_is_served_whole_and_in_ranges(cluster: Cluster) -> None:
    """With every copy's pages evicted before each read, the value and a range across two
    sendfile spans come back exact (the spans were read and checked in a thread)."""
    value = os.urandom(2 * SEND_SPAN + MiB + 5)
    key = "/cold/value"
    with httpx.Client(base_url=cluster.url, timeout=60, follow_redirects=True) as http:
        assert http.put(key, content=value).status_code == 201
        files = [cluster.blob_file(node, key) for node in range(len(cluster.nodes))]
        for path in files:
            evict(path)
        assert http.get(key).content == value
        for path in files:
            evict(path)
        first, last = SEND_SPAN - 10, 2 * SEND_SPAN + 10
        part = http.get(key, headers={"Range": f"bytes={first}-{last}"})
        assert part.status_code == 206 and part.content == value[first : last + 1]


def test_the_bytes_out_metric_counts_what_sendfile_sent(cluster: Cluster) -> None:
    value = os.urandom(3 * MiB)
    key = "/counted/value"
    assert httpx.put(f"{cluster.url}{key}", content=value, timeout=60).status_code == 201
    link = httpx.get(f"{cluster.url}{key}").headers["location"]
    worker = next(node for node in cluster.nodes if link.startswith(node.url + "/"))

    def blob_bytes_out() -> float:
        text = httpx.get(f"{worker.url}/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith('kittenfs_bytes_out_total{route="blob"')
        )

    before = blob_bytes_out()
    assert httpx.get(link, timeout=60).content == value
    assert blob_bytes_out() - before == len(value)


def test_readers_that_stop_reading_a_sendfile_response_are_cut(make_cluster: MakeCluster) -> None:
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
