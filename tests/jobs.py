"""Helpers for the operations tests: run a master job and wait for it, and check placement."""

import hashlib
import time
from typing import Any

import httpx
from cluster import Cluster

from kittenfs.placement import rank


def run_job(cluster: Cluster, kind: str, timeout: float = 120.0, **options: Any) -> dict[str, Any]:
    """Start a job on the master and return its final description."""
    started = httpx.post(f"{cluster.url}/_jobs/{kind}", json=options, timeout=10)
    assert started.status_code == 202, started.text
    return wait_job(cluster, started.json()["id"], timeout)


def wait_job(cluster: Cluster, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Return job ``job_id``'s final description once it is no longer running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(f"{cluster.url}/_jobs/{job_id}", timeout=10).json()
        if job["state"] != "running":
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} still running after {timeout} s")


def holders(cluster: Cluster, values: dict[str, bytes]) -> dict[str, set[int]]:
    """Return, for each key, the indices of the workers holding its current bytes."""
    ids = {w["url"]: w["index"] for w in cluster.cluster_info()["workers"]}
    held: dict[str, set[int]] = {key: set() for key in values}
    for node in cluster.nodes:
        for blob in cluster.worker_blobs(node):
            value = values.get(blob["key"])
            if value is not None and blob["md5"] == hashlib.md5(value).hexdigest():
                held[blob["key"]].add(ids[node.url])
    return held


def preferred(cluster: Cluster, key: str, replicas: int = 3) -> set[int]:
    """Return the indices of the workers rendezvous hashing prefers for ``key``."""
    workers = cluster.cluster_info()["workers"]
    by_id = {w["id"]: w["index"] for w in workers if w["state"] == "up" and not w["draining"]}
    return {by_id[worker_id] for worker_id in rank(key, by_id)[:replicas]}
