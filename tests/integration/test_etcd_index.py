"""The index on a 3-member etcd cluster started by the test: writes go on when the etcd
leader is killed under them, and ``kittenfs up --index etcd`` runs two masters on an etcd
cluster of its own."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from cluster import MakeCluster, running_up, wait_until
from etcdserver import own_cluster
from test_masters import info, wait_up, writes_through_a_fault

pytestmark = pytest.mark.own_engine  # its engines are its own: no second pass


def test_no_acknowledged_write_is_lost_when_the_etcd_leader_dies(
    make_cluster: MakeCluster,
) -> None:
    """Two masters on a 3-member etcd; the etcd leader is killed (-9) under four writers and
    started again later: the masters go on through the other members (a request is moved
    to another member only if it never reached the dead one), every acknowledged write reads
    back whole, and the duties stay held."""
    etcd = own_cluster(3)
    try:
        cluster = make_cluster(masters=2, index=etcd.url(), master_args=["--replaced-grace", "0"])
        masters = [cluster.master, *cluster.others]
        wait_up(cluster.others[0].url, 3)
        killed: list[int] = []

        def kill_leader() -> None:
            wait_until(lambda: etcd.leader() is not None, "an etcd leader")
            leader = etcd.leader()
            assert leader is not None
            etcd.signal(leader, signal.SIGKILL)
            killed.append(leader)
            wait_until(lambda: etcd.leader() not in (None, leader), "a new etcd leader")

        acknowledged, failed = writes_through_a_fault(
            masters, kill_leader, lambda: etcd.start_member(killed[0]), resume_at=300
        )
        assert len(acknowledged) > 400, failed  # only writes in flight at the kill may fail
        seen = {info(m.url)["duties"] for m in masters}
        assert len(seen) == 1 and "" not in seen, seen
    finally:
        etcd.remove()


def test_up_with_etcd_runs_two_masters_on_its_own_cluster(tmp_path: Path) -> None:
    """``kittenfs up --index etcd`` starts three etcd members in its data directory and two
    masters on them; stopped, it leaves no member running; started again (on the same
    ports: the members remember their peers), it finds every value."""
    own_cluster(1).remove()  # skips, or fails where etcd is required
    etcd_data = tmp_path / "data" / "etcd"
    with running_up(tmp_path, "--index", "etcd", until="kittenFS is up", ports=4) as up:
        second = f"http://127.0.0.1:{up.port + 3}"
        assert "etcd (3 members)" in up.output() and str(etcd_data) in up.output()
        wait_up(second, 2)
        assert httpx.put(f"{up.url}/up/etcd", content=b"shared").status_code == 201
        assert httpx.get(f"{second}/up/etcd").content == b"shared"
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(etcd_data) not in processes, "an etcd member outlived it"
    with running_up(tmp_path, "--index", "etcd", until="kittenFS is up", ports=4) as up:
        assert httpx.get(f"{up.url}/up/etcd").content == b"shared"
        second = f"http://127.0.0.1:{up.port + 3}"
        wait_until(lambda: httpx.get(f"{second}/up/etcd").content == b"shared", "the second")
