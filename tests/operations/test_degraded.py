"""Degraded writes: with a worker down, writes go to the next workers and count as misplaced;
once it is back, a rebalance puts every key where placement wants it."""

import os
import subprocess
import sys
from typing import Any

import httpx
from cluster import Cluster, MakeCluster
from jobs import holders, run_job
from test_rebalance import FAST_REAP, wait_placed

from kittenfs.placement import rank


def key_health(cluster: Cluster) -> dict[str, Any]:
    health: dict[str, Any] = httpx.get(
        f"{cluster.url}/_cluster", params={"keys": "1"}, timeout=10
    ).json()["keys"]
    return health


def test_writes_succeed_while_a_worker_is_down_and_are_put_back_later(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(master_args=FAST_REAP, workers=4)
    before = {f"/deg/old/{i}": os.urandom(500 + i) for i in range(20)}
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for key, value in before.items():
            assert http.put(key, content=value).status_code == 201
        assert key_health(cluster) == {
            "live": 20,
            "unlinked": 0,
            "under_replicated": 0,
            "misplaced": 0,
        }
        down = cluster.nodes[1]
        down.stop()
        cluster.wait_worker_state(1, "down")
        during = {f"/deg/new/{i}": os.urandom(700 + i) for i in range(40)}
        for key, value in during.items():
            assert http.put(key, content=value).status_code == 201
        for key, value in {**before, **during}.items():  # reads go to the live replicas
            assert http.get(key).content == value
        health = key_health(cluster)
        wanted_1 = [k for k in {**before, **during} if 1 in preferred_all(cluster, k)]
        assert health["under_replicated"] == len([k for k in before if k in wanted_1])
        assert health["misplaced"] == len([k for k in during if k in wanted_1]) > 0
        status = subprocess.run(
            [sys.executable, "-m", "kittenfs", "status", "--url", cluster.url],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert status.returncode == 0, status.stderr
        assert f"{health['misplaced']} misplaced" in status.stdout
        down.start()
        cluster.wait_workers_up(4)
        job = run_job(cluster, "rebalance")
        assert job["state"] == "done" and not job["errors"], job
        assert key_health(cluster)["misplaced"] == 0
        assert wait_placed(cluster, {**before, **during}) == {}
        assert all(len(h) == 3 for h in holders(cluster, {**before, **during}).values())


def preferred_all(cluster: Cluster, key: str) -> set[int]:
    """The workers placement prefers for ``key`` counting down ones too."""
    workers = cluster.cluster_info()["workers"]
    by_id = {w["id"]: w["index"] for w in workers}
    return {by_id[worker_id] for worker_id in rank(key, by_id)[:3]}
