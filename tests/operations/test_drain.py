"""Drain and remove: shrinking the cluster moves every replica off first, and loses nothing."""

import os
import threading
from typing import Any

import httpx
from cluster import Cluster, MakeCluster
from jobs import holders, preferred, wait_job
from test_rebalance import FAST_REAP, fill, wait_placed


def drain(cluster: Cluster, index: int) -> dict[str, Any]:
    started = httpx.post(f"{cluster.url}/_workers/{index}/drain", timeout=10)
    assert started.status_code == 202, started.text
    return wait_job(cluster, started.json()["id"])


def test_shrink_from_5_to_3_by_draining_under_load(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=FAST_REAP, workers=5)
    values = fill(cluster.url, 100, "/d")
    acked: dict[str, bytes] = {}
    stop = threading.Event()

    def writer() -> None:
        with httpx.Client(base_url=cluster.url, timeout=30) as http:
            for i in range(300):
                if stop.is_set():
                    return
                value = os.urandom(100 + i * 313 % 80_000)
                key = f"/d/{i % 100}" if i % 3 else f"/during/{i}"
                if http.put(key, content=value).status_code in (201, 204):
                    acked[key] = value

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for index in (3, 4):
            job = drain(cluster, index)
            assert job["state"] == "done" and not job["errors"], job
    finally:
        stop.set()
        thread.join()
    final = {**values, **acked}
    assert wait_placed(cluster, final) == {}
    assert all(not ({3, 4} & held) for held in holders(cluster, final).values())
    for node in cluster.nodes[3:]:
        node.stop()
    for index in (3, 4):
        cluster.wait_worker_state(index, "down")
        assert httpx.delete(f"{cluster.url}/_workers/{index}").status_code == 204
    info = cluster.cluster_info()
    assert sorted(w["index"] for w in info["workers"]) == [0, 1, 2]
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for key, value in final.items():
            assert http.get(key).content == value, key
            assert preferred(cluster, key) == {0, 1, 2}
        assert http.put("/after-shrink", content=b"x").status_code == 201
    newcomer = cluster.add_worker()  # indices are never given twice
    cluster.wait_workers_up(4)
    assert {w["url"]: w["index"] for w in cluster.cluster_info()["workers"]}[newcomer.url] == 5


def test_a_dry_run_drain_marks_nothing(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=FAST_REAP, workers=4)
    fill(cluster.url, 10, "/dry")
    started = httpx.post(f"{cluster.url}/_workers/3/drain", json={"dry_run": True})
    job = wait_job(cluster, started.json()["id"])
    assert job["state"] == "done" and job["kind"] == "drain" and not job["fixed"]
    assert not any(w["draining"] for w in cluster.cluster_info()["workers"])
    assert httpx.post(f"{cluster.url}/_workers/9/drain").status_code == 404


def test_removing_a_worker_that_is_needed_is_refused(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=FAST_REAP, replicas=1)
    values = fill(cluster.url, 30, "/only")
    held = holders(cluster, values)
    victim = next(iter(held[next(iter(values))]))
    node = next(
        n for n in cluster.nodes if n.url == cluster.cluster_info()["workers"][victim]["url"]
    )
    up = httpx.delete(f"{cluster.url}/_workers/{victim}")
    assert up.status_code == 409 and up.json()["error"] == "worker_up"
    node.stop()
    cluster.wait_worker_state(victim, "down")
    only = httpx.delete(f"{cluster.url}/_workers/{victim}", params={"force": "1"})
    assert only.status_code == 409 and only.json()["error"] == "only_copy"
    assert "only copy" in only.json()["detail"]
    assert httpx.delete(f"{cluster.url}/_workers/99").status_code == 404
    assert httpx.post(f"{cluster.url}/_workers/x/drain").status_code == 404
    assert httpx.get(f"{cluster.url}/_workers/0/drain").status_code == 405
