"""Multi-host: the master and each worker in their own network namespace, with their own IP
address, joined by veth pairs to a bridge (as separate machines on one switch).  The tests
cut links and routes and check that nothing acknowledged is lost.  They need root and
iproute2; without them they skip, saying so.  Traffic goes only to these namespaces."""

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="multi-host tests need root and iproute2 (ip netns) to build network namespaces")

WORKERS = 4


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class Hosts:
    """A bridge in the test's namespace and one namespace per process, with its address."""

    root: Path
    tag: str = field(default_factory=lambda: os.urandom(2).hex())
    net: str = field(default_factory=lambda: f"10.{random.randint(100, 199)}.{random.randint(0, 250)}")
    spaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"kb{self.tag}"

    def address(self, host: int) -> str:
        return f"{self.net}.{10 + host}"

    def link(self, host: int) -> str:
        return f"kv{self.tag}{host}"

    def build(self, hosts: int) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.net}.1/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host in range(hosts):
            space = f"kfs-{self.tag}-{host}"
            ip("netns", "add", space)
            self.spaces.append(space)
            ip("link", "add", self.link(host), "type", "veth", "peer", "name", f"kp{self.tag}{host}")
            ip("link", "set", f"kp{self.tag}{host}", "netns", space)
            ip("link", "set", self.link(host), "master", self.bridge)
            ip("link", "set", self.link(host), "up")
            ip("netns", "exec", space, "ip", "link", "set", "lo", "up")
            ip("netns", "exec", space, "ip", "addr", "add", f"{self.address(host)}/24", "dev",
               f"kp{self.tag}{host}")
            ip("netns", "exec", space, "ip", "link", "set", f"kp{self.tag}{host}", "up")

    def run(self, host: int, *args: str) -> None:
        log = (self.root / f"host-{host}.log").open("ab")
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.spaces[host], sys.executable, "-m", "kittenfs", *args],
            stdout=log, stderr=log))

    def teardown(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
        for space in self.spaces:
            subprocess.run(["ip", "netns", "del", space], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)


@pytest.fixture
def hosts(tmp_path):
    net = Hosts(tmp_path)
    try:
        net.build(1 + WORKERS)
        master = f"http://{net.address(0)}:3000"
        net.run(0, "master", "--host", net.address(0), "--port", "3000", "--data",
                str(tmp_path / "master"), "--down-after", "2", "--replaced-grace", "0.5")
        wait(lambda: httpx.get(f"{master}/health", timeout=1).status_code == 200, 20)
        for w in range(WORKERS):
            net.run(1 + w, "worker", "--master", master, "--host", net.address(1 + w),
                    "--port", "3001", "--data", str(tmp_path / f"worker-{w}"))
            wait(lambda w=w: len(up(master)) == w + 1, 20)
        yield net, master
    finally:
        net.teardown()


def wait(condition, timeout: float) -> None:
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
    workers = httpx.get(f"{master}/_cluster", timeout=5).json()["workers"]
    return [w["index"] for w in workers if w["state"] == "up"]


def index_of(master: str, address: str) -> int:
    workers = httpx.get(f"{master}/_cluster", timeout=5).json()["workers"]
    return next(w["index"] for w in workers if address in w["url"])


class Writer(threading.Thread):
    """Writes while the network changes; keeps what was acknowledged."""

    def __init__(self, master: str) -> None:
        super().__init__()
        self.master, self.acked, self.stop = master, {}, threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.master, timeout=15) as http:
            for i in range(2000):
                if self.stop.is_set():
                    return
                key, value = f"/mh/{i % 60}", os.urandom(100 + i * 997 % 90_000)
                try:
                    if http.put(key, content=value).status_code in (201, 204):
                        self.acked[key] = value
                except httpx.HTTPError:
                    pass


def check_all(master: str, acked: dict[str, bytes]) -> None:
    with httpx.Client(base_url=master, timeout=30) as http:
        started = http.post("/_jobs/repair").json()
        wait(lambda: http.get(f"/_jobs/{started['id']}").json()["state"] == "done", 60)
        health = http.get("/_cluster", params={"keys": "1"}).json()["keys"]
        assert health["under_replicated"] == 0, health
        for key, value in acked.items():
            got = http.get(key, params={"direct": ""})
            assert got.status_code == 200 and got.content == value, key


def test_a_worker_cut_off_during_load_loses_nothing(hosts):
    net, master = hosts
    writer = Writer(master)
    writer.start()
    try:
        time.sleep(1)
        victim = index_of(master, net.address(2))
        ip("link", "set", net.link(2), "down")  # worker 1's cable is pulled
        wait(lambda: victim not in up(master), 15)
        during = len(writer.acked)
        time.sleep(2)
        assert len(writer.acked) >= during  # writes go on, to the other workers
        ip("link", "set", net.link(2), "up")
        wait(lambda: victim in up(master), 20)
        time.sleep(1)
    finally:
        writer.stop.set()
        writer.join()
    assert len(writer.acked) > 20
    check_all(master, writer.acked)


def test_the_master_cut_off_from_a_worker_that_clients_still_reach(hosts):
    net, master = hosts
    victim_address = net.address(3)
    victim = index_of(master, victim_address)
    # Only the master loses its route to the worker; the clients (here) still reach both.
    ip("netns", "exec", net.spaces[0], "ip", "route", "add", "blackhole",
       f"{victim_address}/32")
    try:
        wait(lambda: victim not in up(master), 15)
        assert httpx.get(f"http://{victim_address}:3001/health", timeout=5).status_code == 200
        writer = Writer(master)
        writer.start()
        time.sleep(3)
        writer.stop.set()
        writer.join()
        assert len(writer.acked) > 10  # the master writes to the workers it can reach
    finally:
        ip("netns", "exec", net.spaces[0], "ip", "route", "del", "blackhole",
           f"{victim_address}/32")
    wait(lambda: victim in up(master), 20)
    check_all(master, writer.acked)
