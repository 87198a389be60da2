"""Lost copies (issue 9, item 5): a worker that lost a blob, its LevelDB, or both.

Whichever replica lost its copy, every read path returns the value (never a false 404),
the key counts as under-replicated until the master has repaired it unasked, and a worker
rebuilds a lost or damaged LevelDB from its files rather than reporting an empty store.
"""

import asyncio
import glob
import os
import shutil
import time
from collections.abc import Callable

import httpx
import pytest
from cluster import Cluster, MakeCluster

import kittenfs

#: Sizes: an inline value (kept in LevelDB) and a file-backed one.
INLINE, FILE = 2_000, 300_000


def wait_until(
    condition: Callable[[], object], timeout: float = 60.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.2)


def read_every_way(cluster: Cluster, key: str, value: bytes, times: int = 20) -> None:
    """Read ``key`` by every path a client has, ``times`` each: all must return ``value``."""
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as curl:
        for _ in range(times):
            got = curl.get(key)  # curl -L
            assert got.status_code == 200 and got.content == value, (got.status_code, got.text)
            direct = curl.get(key, params={"direct": ""})
            assert direct.status_code == 200 and direct.content == value
    with kittenfs.Client(cluster.url) as client:
        for _ in range(times):
            assert client.get(key) == value
            with client.open(key) as reader:
                assert reader.read() == value

    async def async_reads() -> None:
        async with kittenfs.AsyncClient(cluster.url) as client:
            for _ in range(times):
                assert await client.get(key) == value

    asyncio.run(async_reads())


def holds(cluster: Cluster, node: int, key: str) -> bool:
    return any(b["key"] == key for b in cluster.worker_blobs(cluster.nodes[node]))


def under_replicated(cluster: Cluster) -> int:
    keys = httpx.get(f"{cluster.url}/_cluster", params={"keys": "1"}, timeout=30).json()["keys"]
    return int(keys["under_replicated"])


#: A cluster and the values it holds.
Stored = tuple[Cluster, dict[str, bytes]]


@pytest.fixture
def stored(make_cluster: MakeCluster) -> Stored:
    """A cluster without the hot-value cache (so small reads reach the workers too) holding
    an inline and a file-backed value on every worker."""
    cluster = make_cluster(master_args=["--cache-bytes", "0"])
    values = {"/lost/inline": os.urandom(INLINE), "/lost/file": os.urandom(FILE)}
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        for key, value in values.items():
            assert http.put(key, content=value).status_code == 201
    return cluster, values


def test_a_blob_deleted_on_a_worker_reads_everywhere_and_is_repaired_unasked(
    stored: Stored,
) -> None:
    cluster, values = stored
    files = glob.glob(str(cluster.root / "worker-1" / "blobs" / "*" / "*" / "*"))
    assert len(files) == 1
    os.remove(files[0])  # the file-backed value's copy on worker 1
    read_every_way(cluster, "/lost/file", values["/lost/file"])
    wait_until(lambda: under_replicated(cluster) == 0, what="repair")

    def blob_on_worker_1() -> str:
        return str(
            next(
                b["blob"]
                for b in cluster.worker_blobs(cluster.nodes[1])
                if b["key"] == "/lost/file"
            )
        )

    wait_until(
        lambda: httpx.get(
            f"{cluster.nodes[1].url}/check/{blob_on_worker_1()}",
            auth=cluster.auth,
        ).json()["ok"],
        what="the copy back on worker 1",
    )


def test_a_worker_whose_leveldb_was_deleted_rebuilds_it_from_its_files(stored: Stored) -> None:
    """Its file-backed blob is listed again at once; its inline one (which lived only in the
    LevelDB) is lost there, found by the recheck the worker asks for, and repaired."""
    cluster, values = stored
    victim = cluster.nodes[2]
    victim.kill()
    shutil.rmtree(cluster.root / "worker-2" / "index")
    victim.start()
    cluster.wait_workers_up(3)
    assert holds(cluster, 2, "/lost/file")  # never an empty store while files exist
    log = (cluster.root / "worker-2.log").read_text()
    assert "lost or emptied" in log and "metadata rebuilt" in log
    for key, value in values.items():
        read_every_way(cluster, key, value, times=10)
    wait_until(lambda: holds(cluster, 2, "/lost/inline"), what="the inline copy repaired")
    wait_until(lambda: under_replicated(cluster) == 0, what="full replication")
    assert not (cluster.root / "worker-2" / "recheck.pending").exists()


@pytest.mark.parametrize("damage", ["manifest", "current", "log"])
def test_a_worker_whose_leveldb_is_damaged_repairs_it_or_starts_anew(
    stored: Stored, damage: str
) -> None:
    cluster, values = stored
    victim = cluster.nodes[0]
    victim.kill()
    index = cluster.root / "worker-0" / "index"
    if damage == "current":
        os.remove(index / "CURRENT")  # LevelDB alone would reopen (nearly) empty
    else:
        pattern = "MANIFEST-*" if damage == "manifest" else "*.log"
        target = max(index.glob(pattern))
        with target.open("r+b") as handle:
            handle.seek(min(10, max(0, target.stat().st_size - 64)))
            handle.write(b"\xff" * 64)
    victim.start()
    cluster.wait_workers_up(3)
    assert holds(cluster, 0, "/lost/file")
    for key, value in values.items():
        read_every_way(cluster, key, value, times=5)
    wait_until(lambda: holds(cluster, 0, "/lost/inline"), what="the inline copy back")
    wait_until(lambda: under_replicated(cluster) == 0, what="full replication")


def test_a_leveldb_deleted_under_a_running_worker_acknowledges_nothing_more(stored: Stored) -> None:
    cluster, values = stored
    victim = cluster.nodes[1]
    shutil.rmtree(cluster.root / "worker-1" / "index")
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        answer = http.put("/lost/after", content=b"not durable on worker 1")
        assert answer.status_code == 503, answer.text  # the write failed: nothing was acked
        assert http.get("/lost/after").status_code == 404
    wait_until(lambda: not victim.alive(), what="the worker stopping")
    assert "deleted or replaced while in use" in (cluster.root / "worker-1.log").read_text()
    victim.start()
    cluster.wait_workers_up(3)
    assert holds(cluster, 1, "/lost/file")
    for key, value in values.items():
        read_every_way(cluster, key, value, times=5)
    wait_until(lambda: under_replicated(cluster) == 0, what="full replication")
