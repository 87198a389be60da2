"""Disk faults with real processes: corrupted blob files, and a worker whose disk is full."""

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from cluster import Cluster, MakeCluster

import kittenfs


def blob_file(cluster: Cluster, worker: int, blob: str) -> Path:
    return cluster.root / f"worker-{worker}" / "blobs" / blob[0:2] / blob[2:4] / blob


def blob_of(location: str) -> str:
    """Return the blob id a redirect's Location names (the path's last segment)."""
    return urlsplit(location).path.rsplit("/", 1)[1]


def test_a_corrupt_replica_is_never_served_and_reads_fall_back(cluster: Cluster) -> None:
    value = os.urandom(300_000)  # file-backed, and small enough to be MD5-checked on read
    http = httpx.Client(base_url=cluster.url, timeout=30)
    assert http.put("/bad", content=value).status_code == 201
    blob = blob_of(http.get("/bad").headers["location"])
    path = blob_file(cluster, 0, blob)
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0xFF
    path.write_bytes(bytes(data))
    bad = httpx.get(f"{cluster.nodes[0].url}/blob/{blob}", auth=cluster.auth)
    assert bad.status_code == 500 and bad.json()["error"] == "corrupt"
    assert "corrupt blob" in (cluster.root / "worker-0.log").read_text()
    for _ in range(10):  # direct reads skip the corrupt replica, whichever is tried first
        response = http.get("/bad", params={"direct": ""})
        assert response.status_code == 200 and response.content == value
    with kittenfs.Client(cluster.url) as client:
        for _ in range(10):
            assert client.get("/bad") == value
    for _ in range(10):  # curl -L: a redirect to the bad copy comes back and goes on
        assert http.get("/bad", follow_redirects=True).content == value
    # The worker reported it, and the master repaired it unasked.
    deadline = time.monotonic() + 60
    while not httpx.get(f"{cluster.nodes[0].url}/check/{blob}", auth=cluster.auth).json()["ok"]:
        assert time.monotonic() < deadline, "the corrupt copy was not repaired"
        time.sleep(0.2)


def test_a_truncated_replica_is_reported_corrupt_even_for_ranges(cluster: Cluster) -> None:
    value = os.urandom(6 * 1024 * 1024)  # above the worker's full-MD5 limit
    http = httpx.Client(base_url=cluster.url, timeout=30)
    http.put("/short", content=value)
    blob = blob_of(http.get("/short").headers["location"])
    path = blob_file(cluster, 1, blob)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size - 10)
    response = httpx.get(
        f"{cluster.nodes[1].url}/blob/{blob}", headers={"Range": "bytes=0-9"}, auth=cluster.auth
    )
    assert response.status_code == 500 and response.json()["error"] == "corrupt"
    whole = http.get("/short", params={"direct": ""})
    assert hashlib.md5(whole.content).hexdigest() == hashlib.md5(value).hexdigest()


@pytest.fixture
def small_disk_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster whose worker-2 keeps its data on an 8 MiB tmpfs (needs root to mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    cluster = Cluster(tmp_path / "c")
    disk = cluster.root / "worker-2"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_fails_the_write_cleanly_and_keeps_what_is_stored(
    small_disk_cluster: Cluster,
) -> None:
    cluster = small_disk_cluster
    http = httpx.Client(base_url=cluster.url, timeout=60, follow_redirects=True)
    kept = os.urandom(1024 * 1024)
    assert http.put("/kept", content=kept).status_code == 201
    response = http.put("/toobig", content=os.urandom(16 * 1024 * 1024))
    assert response.status_code == 503
    assert response.json()["error"] == "replica_failed"
    assert "507" in response.json()["detail"]
    assert "disk full" in (cluster.root / "worker-2.log").read_text()
    assert http.head("/toobig").status_code == 404
    assert http.get("/kept").content == kept
    assert list((cluster.root / "worker-2" / "tmp").iterdir()) == []
    assert http.put("/after", content=b"small again").status_code == 201
    assert http.get("/after").content == b"small again"


def test_a_worker_at_its_capacity_refuses_writes_cleanly_and_recovers(
    make_cluster: MakeCluster,
) -> None:
    """--capacity-bytes behaves like a full disk: 507 from the worker, 503 for the PUT,
    nothing half-stored, earlier values intact, and room again after deletes."""
    cluster = make_cluster(workers=3, worker_args=["--capacity-bytes", "300000"])
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        kept = {f"/cap/{i}": os.urandom(99_990) for i in range(3)}  # 30 bytes of room left
        for key, value in kept.items():
            assert http.put(key, content=value).status_code == 201
        for size in (90_000, 100):  # a file value, and an inline one through a batch
            refused = http.put(f"/cap/over-{size}", content=os.urandom(size))
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "replica_failed"
            assert "507" in refused.json()["detail"] or "disk_full" in refused.json()["detail"]
            assert http.head(f"/cap/over-{size}").status_code == 404
        for key, value in kept.items():
            assert http.get(key).content == value
        deadline = time.monotonic() + 60
        while any(w["free_bytes"] != 30 for w in cluster.cluster_info()["workers"]):
            assert time.monotonic() < deadline, cluster.cluster_info()["workers"]
            time.sleep(0.2)
        assert http.delete("/cap/0").status_code == 204
        deadline = time.monotonic() + 60  # the delete reaches the workers, then room is back
        while http.put("/cap/again", content=os.urandom(90_000)).status_code != 201:
            assert time.monotonic() < deadline
            time.sleep(0.5)
