"""Multi-host: the master and each worker in their own network namespace, with their own IP
address, joined by veth pairs to a bridge (as separate machines on one switch).  The tests
cut links and routes and check that nothing acknowledged is lost.  They need root and
iproute2; without them they skip, saying so.  Traffic goes only to these namespaces."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from kittenfs.reliability.network import Network, unavailable

pytestmark = pytest.mark.skipif(
    unavailable() is not None, reason=f"multi-host tests: {unavailable()} (ip netns)"
)

WORKERS = 4
#: Seconds a process may take to start: on a loaded machine, importing kittenfs alone once
#: took close to a minute.
START = 180
#: Off loopback a master needs auth and a cluster secret: these hosts run with both.
TOKEN = "multihost-admin-" + os.urandom(8).hex()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Hosts(Network):
    """The namespaces, and the kittenFS processes run on them (killed by PID at teardown)."""

    def __init__(self, root: Path, hosts: int) -> None:
        super().__init__(hosts)
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def run(self, host: int, *args: str) -> None:
        log = (self.root / f"host-{host}.log").open("ab")
        self.procs.append(
            subprocess.Popen(
                [*self.prefix(host), sys.executable, "-m", "kittenfs", *args],
                stdout=log,
                stderr=log,
            )
        )

    def teardown(self) -> None:
        for proc in getattr(self, "procs", []):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
        super().teardown()


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[Hosts, str]]:
    net = Hosts(tmp_path, 1 + WORKERS)
    secret = tmp_path / "cluster.secret"
    secret.write_text(os.urandom(24).hex())
    try:
        master = f"http://{net.address(0)}:3000"
        net.run(
            0,
            "master",
            "--host",
            net.address(0),
            "--port",
            "3000",
            "--data",
            str(tmp_path / "master"),
            "--down-after",
            "2",
            "--replaced-grace",
            "0.5",
            "--cluster-secret-file",
            str(secret),
            "--admin-token",
            TOKEN,
        )
        wait(lambda: httpx.get(f"{master}/health", timeout=1).status_code == 200, START)
        for w in range(WORKERS):
            net.run(
                1 + w,
                "worker",
                "--master",
                master,
                "--host",
                net.address(1 + w),
                "--port",
                "3001",
                "--data",
                str(tmp_path / f"worker-{w}"),
                "--cluster-secret-file",
                str(secret),
            )
            wait(partial(workers_up, master, w + 1), START)
        yield net, master
    finally:
        net.teardown()


def wait(condition: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def up(master: str) -> list[int]:
    workers = httpx.get(f"{master}/_cluster", timeout=5, headers=AUTH).json()["workers"]
    return [w["index"] for w in workers if w["state"] == "up"]


def workers_up(master: str, count: int) -> bool:
    return len(up(master)) == count


def index_of(master: str, address: str) -> int:
    workers = httpx.get(f"{master}/_cluster", timeout=5, headers=AUTH).json()["workers"]
    return int(next(w["index"] for w in workers if address in w["url"]))


class Writer(threading.Thread):
    """Writes while the network changes; keeps what was acknowledged."""

    def __init__(self, master: str) -> None:
        super().__init__()
        self.master, self.stop = master, threading.Event()
        self.acked: dict[str, bytes] = {}
        self.acks = 0  # writes acknowledged (acked keeps the last value of each key)

    def run(self) -> None:
        with httpx.Client(base_url=self.master, timeout=15, headers=AUTH) as http:
            for i in range(2000):
                if self.stop.is_set():
                    return
                key, value = f"/mh/{i % 60}", os.urandom(100 + i * 997 % 90_000)
                try:
                    if http.put(key, content=value).status_code in (201, 204):
                        self.acked[key] = value
                        self.acks += 1
                except httpx.HTTPError:
                    pass


def check_all(master: str, acked: dict[str, bytes]) -> None:
    with httpx.Client(base_url=master, timeout=30, headers=AUTH) as http:
        assert httpx.get(f"{master}/_cluster", timeout=5).status_code == 401  # auth is on
        started = http.post("/_jobs/repair").json()
        wait(lambda: http.get(f"/_jobs/{started['id']}").json()["state"] == "done", 60)
        health = http.get("/_cluster", params={"keys": "1"}).json()["keys"]
        assert health["under_replicated"] == 0, health
        for key, value in acked.items():
            got = http.get(key, params={"direct": ""})
            assert got.status_code == 200 and got.content == value, key


def test_a_worker_cut_off_during_load_loses_nothing(hosts: tuple[Hosts, str]) -> None:
    net, master = hosts
    writer = Writer(master)
    writer.start()
    try:
        wait(lambda: writer.acks >= 5, 30)  # the load is on
        victim = index_of(master, net.address(2))
        net.cut(2)  # worker 1's cable is pulled
        wait(lambda: victim not in up(master), 60)
        during = len(writer.acked)
        before = writer.acks
        wait(lambda: writer.acks >= before + 10, 30)
        assert len(writer.acked) >= during  # writes go on, to the other workers
        net.restore(2)
        wait(lambda: victim in up(master), 60)
        back = writer.acks
        wait(lambda: writer.acks >= back + 5, 30)  # and on once it is back
    finally:
        writer.stop.set()
        writer.join()
    assert len(writer.acked) > 20
    check_all(master, writer.acked)


def test_the_master_cut_off_from_a_worker_that_clients_still_reach(
    hosts: tuple[Hosts, str],
) -> None:
    net, master = hosts
    victim_address = net.address(3)
    victim = index_of(master, victim_address)
    # Only the master loses its route to the worker; the clients (here) still reach both.
    net.blackhole(0, 3)
    try:
        wait(lambda: victim not in up(master), 60)
        assert httpx.get(f"http://{victim_address}:3001/health", timeout=5).status_code == 200
        writer = Writer(master)
        writer.start()
        try:
            wait(lambda: len(writer.acked) > 10, 60)
        finally:
            writer.stop.set()
            writer.join()
        assert len(writer.acked) > 10  # the master writes to the workers it can reach
    finally:
        net.blackhole(0, 3, on=False)
    wait(lambda: victim in up(master), 60)
    check_all(master, writer.acked)
