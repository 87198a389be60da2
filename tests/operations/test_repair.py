"""Repair: missing and corrupt replicas are found by reading every byte, and copied back."""

import os
import shutil

import httpx
from cluster import MakeCluster
from jobs import holders, run_job


def test_repair_restores_a_deleted_and_a_corrupted_replica(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=["--replaced-grace", "0.5"])
    values = {f"/fix/{i}": os.urandom(100_000 + i) for i in range(10)}
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for key, value in values.items():
            assert http.put(key, content=value).status_code == 201
        os.remove(cluster.blob_file(0, "/fix/1"))
        path = cluster.blob_file(1, "/fix/2")
        with open(path, "r+b") as handle:
            handle.seek(-10, os.SEEK_END)
            handle.write(b"\x00" * 10)
        # (No read before the dry run: a read that meets a damaged copy has it repaired.)
        dry = run_job(cluster, "repair", dry_run=True)
        # The worker still has the deleted file's metadata: its copy counts as corrupt.
        assert dry["found"]["corrupt"] == 2 and "missing" not in dry["found"], dry
        assert dry["found"]["under_replicated"] == 2 and not dry["fixed"]
        job = run_job(cluster, "repair")
        assert job["state"] == "done" and not job["errors"], job
        assert job["fixed"] == {"keys": 2, "copies": 2, "dropped": 0}
        for _ in range(6):
            for key in ("/fix/1", "/fix/2"):
                assert http.get(key, params={"direct": ""}).content == values[key]
        assert all(len(held) == 3 for held in holders(cluster, values).values())
        for node in (0, 1):
            for key in ("/fix/1", "/fix/2"):
                blob = next(b for b in cluster.worker_blobs(cluster.nodes[node]) if b["key"] == key)
                check = httpx.get(
                    f"{cluster.nodes[node].url}/check/{blob['blob']}", auth=cluster.auth
                ).json()
                assert check["ok"], check
        again = run_job(cluster, "repair")
        assert again["found"]["ok"] == len(values) and not again["fixed"]


def test_a_wiped_worker_is_filled_again(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=["--replaced-grace", "0.5"])
    values = {f"/wipe/{i}": os.urandom(10 + i * 3000) for i in range(30)}
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        for key, value in values.items():
            assert http.put(key, content=value).status_code == 201
    victim = cluster.nodes[2]
    victim.stop()
    shutil.rmtree(cluster.root / "worker-2")
    victim.start()  # a new, empty worker: it registers under a new index
    cluster.wait_workers_up(3)
    assert [b for b in cluster.worker_blobs(victim) if b["key"] in values] == []
    job = run_job(cluster, "repair")
    assert job["state"] == "done" and not job["errors"], job
    assert job["found"]["under_replicated"] == len(values)
    assert all(len(held) == 3 for held in holders(cluster, values).values())
    assert len([b for b in cluster.worker_blobs(victim) if b["key"] in values]) == len(values)
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for key, value in values.items():
            assert http.get(key).content == value
