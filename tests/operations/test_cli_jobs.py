"""``kittenfs rebalance`` and ``kittenfs repair`` from the command line."""

import os
import subprocess
import sys

import httpx
from cluster import MakeCluster


def kfs(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KITTENFS_URL", "COLUMNS")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "kittenfs", *args, "--url", url],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_repair_and_rebalance_commands_report_and_fix(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=["--replaced-grace", "0.5"])
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        for i in range(20):
            assert http.put(f"/cli/{i}", content=os.urandom(2000 + i)).status_code == 201
    cluster.add_worker()
    cluster.wait_workers_up(4)
    dry = kfs("rebalance", "--dry-run", url=cluster.url)
    assert dry.returncode == 0, dry.stderr
    assert "(dry run)" in dry.stdout and "misplaced" in dry.stdout
    done = kfs("rebalance", "--rate", "200", url=cluster.url)
    assert done.returncode == 0, done.stderr
    assert "fixed: keys" in done.stdout and "20/20 keys" in done.stdout
    repair = kfs("repair", url=cluster.url)
    assert repair.returncode == 0, repair.stderr
    assert "ok" in repair.stdout and "fixed: keys" not in repair.stdout
    bad = kfs("repair", "--concurrency", "0", url=cluster.url)
    assert bad.returncode == 1 and "concurrency" in bad.stderr
    gc = kfs("gc", "--dry-run", "--grace", "0", url=cluster.url)
    assert gc.returncode == 0, gc.stderr
    assert "gc" in gc.stdout and "(dry run)" in gc.stdout
    refused = kfs("remove", "0", url=cluster.url)
    assert refused.returncode == 1 and "worker_up" in refused.stderr
