"""The master's hot-value cache (--cache-bytes, on by default): one round trip, written through
by PUTs and read through on a miss, invalidation, bounds."""

import hashlib
import signal
import threading
import time
from typing import Any

import httpx
import pytest
from cluster import Cluster, MakeCluster

from kittenfs.master.cache import ENTRY_OVERHEAD

CACHE = ["--cache-bytes", "1000000", "--cache-value-max", "4096"]


@pytest.fixture
def cached(make_cluster: MakeCluster) -> Cluster:
    return make_cluster(master_args=CACHE)


def cache_stats(cluster: Cluster) -> dict[str, Any]:
    stats: dict[str, Any] = cluster.cluster_info()["cache"]
    return stats


def test_small_values_are_served_by_the_master_in_one_round_trip(cached: Cluster) -> None:
    http = httpx.Client(base_url=cached.url)
    http.put("/hot", content=b"warm bytes")
    first = http.get("/hot")
    assert first.status_code == 200 and first.content == b"warm bytes" and not first.history
    assert first.headers["etag"] == '"{}"'.format(first.headers["content-md5"])
    second = http.get("/hot")
    assert second.content == b"warm bytes"
    stats = cache_stats(cached)  # written through by the PUT: both reads hit
    # An entry costs its value, its key and the fixed overhead of its record and LRU node.
    assert (stats["entries"], stats["bytes"], stats["hits"]) == (1, 10 + 4 + ENTRY_OVERHEAD, 2)
    assert http.get("/hot", headers={"If-None-Match": first.headers["etag"]}).status_code == 304


def test_large_values_and_ranges_still_redirect(cached: Cluster) -> None:
    http = httpx.Client(base_url=cached.url)
    http.put("/big", content=b"x" * 5000)
    http.put("/small", content=b"0123456789")
    assert http.get("/big").status_code == 302
    ranged = http.get("/small", headers={"Range": "bytes=2-3"})
    assert ranged.status_code == 302
    assert httpx.get(ranged.headers["location"], headers={"Range": "bytes=2-3"}).content == b"23"
    assert cache_stats(cached)["entries"] == 1  # /small only


def test_a_miss_reads_through_a_replica_once(cached: Cluster) -> None:
    http = httpx.Client(base_url=cached.url, timeout=30)
    http.put("/cold", content=b"from a worker")
    cached.master.stop()  # a fresh master starts with an empty cache
    cached.master.start()
    cached.wait_workers_up(3)
    first = http.get("/cold")
    assert (first.status_code, first.content, first.history) == (200, b"from a worker", [])
    assert first.headers["content-md5"] == hashlib.md5(b"from a worker").hexdigest()
    stats = cache_stats(cached)
    assert (stats["misses"], stats["hits"], stats["entries"]) == (1, 0, 1)
    assert http.get("/cold").content == b"from a worker"
    assert cache_stats(cached)["hits"] == 1


def test_the_cache_can_be_turned_off(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=["--cache-bytes", "0"])
    http = httpx.Client(base_url=cluster.url, timeout=30)
    http.put("/k", content=b"v")
    assert http.get("/k").status_code == 302
    assert http.get("/k", follow_redirects=True).content == b"v"
    assert cache_stats(cluster)["entries"] == 0


def test_writes_deletes_and_unlinks_invalidate_before_they_answer(cached: Cluster) -> None:
    http = httpx.Client(base_url=cached.url)
    http.put("/k", content=b"one")
    assert http.get("/k").content == b"one"
    http.put("/k", content=b"two")
    assert http.get("/k").content == b"two"
    http.request("UNLINK", "/k")
    assert http.get("/k").status_code == 404
    http.put("/k", content=b"three")
    assert http.get("/k").content == b"three"
    assert http.delete("/k").status_code == 204
    assert http.get("/k").status_code == 404
    assert cache_stats(cached)["entries"] == 0


def test_the_cache_is_bounded_in_bytes(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=["--cache-bytes", "10000", "--cache-value-max", "4096"])
    http = httpx.Client(base_url=cluster.url)
    for i in range(10):
        http.put(f"/b/{i}", content=bytes([i]) * 3000)
    for i in range(10):
        assert http.get(f"/b/{i}").content == bytes([i]) * 3000
    stats = cache_stats(cluster)
    assert stats["bytes"] <= 10000 and stats["entries"] == 2  # 3000 + 4 + 512 bytes each
    assert http.get("/b/9").content == bytes([9]) * 3000  # the most recent stayed
    assert cache_stats(cluster)["hits"] == 1


def test_hits_need_no_worker(cached: Cluster) -> None:
    http = httpx.Client(base_url=cached.url)
    http.put("/alone", content=b"cached")
    assert http.get("/alone").content == b"cached"
    for node in cached.nodes:
        node.kill(signal.SIGKILL)
    assert http.get("/alone").content == b"cached"
    http.put("/other", content=b"never read")  # refused: no worker is up any more
    assert http.get("/other").status_code in (404, 502, 503)


def test_no_read_returns_bytes_older_than_a_write_acknowledged_before_it(cached: Cluster) -> None:
    """Writers and readers hammer one key; every read must be as new as the last ack before it."""
    writes: dict[bytes, tuple[float, float]] = {}
    reads: list[tuple[float, bytes]] = []
    done = threading.Event()

    def writer(w: int) -> None:
        with httpx.Client(base_url=cached.url, timeout=30) as http:
            for seq in range(120):
                value = b"%d:%d:" % (w, seq) + b"." * 200
                started = time.monotonic()
                if http.put("/hammer", content=value).status_code in (201, 204):
                    writes[value] = (started, time.monotonic())

    def reader() -> None:
        with httpx.Client(base_url=cached.url, timeout=30, follow_redirects=True) as http:
            while not done.is_set():
                started = time.monotonic()
                response = http.get("/hammer")
                if response.status_code == 200:
                    reads.append((started, response.content))

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    readers = [threading.Thread(target=reader) for _ in range(4)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    assert len(writes) == 240 and len(reads) > 200
    stale = []
    for read_start, value in reads:
        assert value in writes, "a read returned bytes nobody wrote"
        _, value_acked = writes[value]
        # Stale: some write W was acknowledged before this read began, and the value read
        # was acknowledged before W even started (so it certainly committed before W).
        if any(w_end < read_start and value_acked < w_start for w_start, w_end in writes.values()):
            stale.append(value[:8])
    assert stale == []
    assert cache_stats(cached)["hits"] > 0
