"""Rebalance: after workers join, every key moves to its preferred workers, online and safely."""

import os
import signal
import threading
import time

import httpx
from cluster import Cluster, MakeCluster
from jobs import holders, preferred, run_job, wait_job

FAST_REAP = ["--replaced-grace", "0.5"]


def fill(url: str, count: int, prefix: str = "/r") -> dict[str, bytes]:
    values = {f"{prefix}/{i}": os.urandom(100 + (i % 7) * 30_000) for i in range(count)}
    with httpx.Client(base_url=url, timeout=30) as http:
        for key, value in values.items():
            assert http.put(key, content=value).status_code == 201
    return values


def wait_placed(
    cluster: Cluster, values: dict[str, bytes], timeout: float = 120.0
) -> dict[str, tuple[set[int], set[int]]]:
    """Wait until every key is held by exactly its preferred workers (the reaper done)."""
    deadline = time.monotonic() + timeout
    while True:
        held = holders(cluster, values)
        wrong = {
            k: (h, preferred(cluster, k)) for k, h in held.items() if h != preferred(cluster, k)
        }
        if not wrong or time.monotonic() > deadline:
            return wrong
        time.sleep(0.5)


def test_grow_from_3_to_5_and_rebalance_under_load(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=FAST_REAP)
    values = fill(cluster.url, 120)
    cluster.add_worker()
    cluster.add_worker()
    cluster.wait_workers_up(5)
    acked: dict[str, bytes] = {}
    bad_reads: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with httpx.Client(base_url=cluster.url, timeout=30) as http:
            i = 0
            while not stop.is_set() and i < 400:
                key = f"/r/{i % 120}" if i % 2 else f"/new/{i}"
                value = os.urandom(50 + i * 101 % 90_000)
                if http.put(key, content=value).status_code in (201, 204):
                    acked[key] = value
                i += 1

    def reader() -> None:
        with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
            while not stop.is_set():
                for key in list(values)[:40]:
                    got = http.get(key)
                    if got.status_code != 200:
                        bad_reads.append(f"{key}: {got.status_code}")

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    try:
        job = run_job(cluster, "rebalance")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert job["state"] == "done", job
    assert job["fixed"].get("keys", 0) > 0 and not job["errors"], job
    assert bad_reads == []
    final = {**values, **acked}
    again = run_job(cluster, "rebalance")  # keys written during the first run
    assert again["state"] == "done" and not again["errors"], again
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for key, value in final.items():
            assert http.get(key).content == value, key
    assert wait_placed(cluster, final) == {}
    check = run_job(cluster, "rebalance", dry_run=True)
    assert check["found"].get("misplaced", 0) == 0 and check["found"]["ok"] == len(final)


def test_a_rebalance_killed_midway_converges_when_run_again(make_cluster: MakeCluster) -> None:
    """Killed (-9) midway, then run again: by hand on LevelDB, by the master itself at its
    restart on a shared index (the running job is kept there)."""
    cluster = make_cluster(master_args=FAST_REAP)
    values = fill(cluster.url, 150, "/k")
    cluster.add_worker()
    cluster.add_worker()
    cluster.wait_workers_up(5)
    started = httpx.post(f"{cluster.url}/_jobs/rebalance", json={"rate": 40}, timeout=10).json()
    deadline = time.monotonic() + 60
    while httpx.get(f"{cluster.url}/_jobs/{started['id']}").json()["items_done"] < 30:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cluster.master.kill(signal.SIGKILL)
    cluster.master.start()
    cluster.wait_workers_up(5)
    if cluster.index:  # shared (PostgreSQL, etcd): the job is in the index, taken over
        deadline = time.monotonic() + 60
        while httpx.get(f"{cluster.url}/_jobs/{started['id']}").status_code != 200:
            assert time.monotonic() < deadline, "the job was not taken over at the restart"
            time.sleep(0.1)
        job = wait_job(cluster, started["id"])
    else:  # LevelDB: the job is run again by hand
        job = run_job(cluster, "rebalance")
    assert job["state"] == "done" and not job["errors"], job
    assert job["fixed"].get("keys", 0) > 0  # the first run did not finish
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for key, value in values.items():
            assert http.get(key).content == value, key
    assert wait_placed(cluster, values) == {}, job


def test_jobs_refuse_bad_options_and_a_second_job(cluster: Cluster) -> None:
    for body in ({"rate": -1}, {"dry_run": "yes"}, {"concurrency": 0}, {"speed": 1}, [1]):
        answer = httpx.post(f"{cluster.url}/_jobs/rebalance", json=body)
        assert answer.status_code == 400 and answer.json()["error"] in ("bad_option", "bad_json")
    assert httpx.get(f"{cluster.url}/_jobs/rebalance").status_code == 405
    assert httpx.get(f"{cluster.url}/_jobs/nosuchjob").status_code == 404
    fill(cluster.url, 20)
    first = httpx.post(f"{cluster.url}/_jobs/repair", json={"rate": 2}).json()
    second = httpx.post(f"{cluster.url}/_jobs/rebalance")
    assert second.status_code == 409 and second.json()["error"] == "job_running"
    cancelled = httpx.delete(f"{cluster.url}/_jobs/{first['id']}").json()
    assert cancelled["state"] == "cancelled" and cancelled["items_done"] < 20
    assert wait_job(cluster, first["id"])["state"] == "cancelled"
    listed = httpx.get(f"{cluster.url}/_jobs").json()
    assert listed["running"] is None and listed["jobs"][-1]["id"] == first["id"]


def test_auto_rebalance_starts_when_the_up_workers_change(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=[*FAST_REAP, "--auto-rebalance", "1"])
    values = fill(cluster.url, 40, "/auto")
    cluster.add_worker()
    cluster.wait_workers_up(4)
    # (The workers joining at start may have set off a rebalance with nothing to move
    # already: wait for the one that moves keys to the new worker.)
    deadline = time.monotonic() + 60
    while True:
        jobs = httpx.get(f"{cluster.url}/_jobs").json()["jobs"]
        moved = [
            job
            for job in jobs
            if job["state"] == "done"
            and job["kind"] == "rebalance"
            and job["options"]["auto"] is True
            and job["fixed"].get("keys", 0) > 0
        ]
        if moved:
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(0.2)
    assert wait_placed(cluster, values) == {}
