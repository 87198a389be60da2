"""Two masters on one etcd, each process on a host of its own (network namespaces, as in
test_multihost.py): the master holding the duties is cut off from etcd, and only from etcd
(its clients and workers still reach it), under writes through both masters.  The other
takes the duties and the cut-off master's writes in flight; the cut-off master answers
errors, never a success it could not commit; once its route is back it serves again, and
no acknowledged write is lost.  Needs root, iproute2 and etcd; skips (or, under
$KFS_REQUIRE_ETCD, fails) without them."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_multihost import AUTH, START, TOKEN, Hosts, wait

import kittenfs
from kittenfs.localetcd import program
from kittenfs.reliability.network import unavailable

pytestmark = pytest.mark.skipif(
    unavailable() is not None, reason=f"multi-host tests: {unavailable()} (ip netns)"
)

ETCD, A, B = 0, 1, 2
WORKERS = 3


def info(url: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{url}/_cluster", timeout=5, headers=AUTH).json()
    return found


def master_args(net: Hosts, host: int, root: Path, secret: Path, index: str) -> list[str]:
    return [
        "master", "--host", net.address(host), "--port", "3000",
        "--data", str(root / f"master-{host}"), "--index", index,
        "--down-after", "3", "--replaced-grace", "0",
        "--cluster-secret-file", str(secret), "--admin-token", TOKEN,
    ]  # fmt: skip


@pytest.fixture
def masters(tmp_path: Path) -> Iterator[tuple[Hosts, str, str]]:
    """etcd on host 0, masters on hosts 1 and 2 (sharing one master.key), three workers
    beating to both; yield the network and the two masters' URLs."""
    etcd = program()
    if etcd is None:
        if os.environ.get("KFS_REQUIRE_ETCD"):
            pytest.fail("etcd is not installed, and KFS_REQUIRE_ETCD is set")
        pytest.skip("etcd is not installed")
    net = Hosts(tmp_path, 3 + WORKERS)
    secret = tmp_path / "cluster.secret"
    secret.write_text(os.urandom(24).hex())
    try:
        client = f"http://{net.address(ETCD)}:2379"
        with (tmp_path / "etcd.log").open("ab") as log:
            net.procs.append(
                subprocess.Popen(
                    [
                        *net.prefix(ETCD), etcd, "--data-dir", str(tmp_path / "etcd"),
                        "--listen-client-urls", client, "--advertise-client-urls", client,
                        "--listen-peer-urls", "http://127.0.0.1:2380",
                        "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                        "--initial-cluster", "default=http://127.0.0.1:2380",
                    ],
                    stdout=log,
                    stderr=log,
                )
            )  # fmt: skip
        wait(lambda: httpx.get(f"{client}/health", timeout=1).json()["health"] == "true", START)
        index = f"etcd://{net.address(ETCD)}:2379/kittenfs"
        urls = [f"http://{net.address(host)}:3000" for host in (A, B)]
        net.run(A, *master_args(net, A, tmp_path, secret, index))
        wait(lambda: httpx.get(f"{urls[0]}/health", timeout=1).status_code == 200, START)
        (tmp_path / f"master-{B}").mkdir()
        shutil.copy(tmp_path / f"master-{A}" / "master.key", tmp_path / f"master-{B}")
        net.run(B, *master_args(net, B, tmp_path, secret, index))
        wait(lambda: httpx.get(f"{urls[1]}/health", timeout=1).status_code == 200, START)
        for w in range(WORKERS):
            host = 3 + w
            net.run(
                host, "worker", "--master", ",".join(urls), "--host", net.address(host),
                "--port", "3001", "--data", str(tmp_path / f"worker-{w}"),
                "--cluster-secret-file", str(secret), "--heartbeat-interval", "0.5",
            )  # fmt: skip
        for url in urls:
            wait(lambda url=url: sum(w["state"] == "up" for w in info(url)["workers"]) == 3, START)
        yield net, urls[0], urls[1]
    finally:
        net.teardown()


class Writers:
    """Four writers of distinct keys, two through clients given A then B, two given B then
    A; they keep what was acknowledged and what failed."""

    def __init__(self, a: str, b: str) -> None:
        self.orders = [f"{a},{b}", f"{b},{a}"] * 2
        self.stop = threading.Event()
        self.acknowledged: dict[str, bytes] = {}
        self.failed: dict[str, bytes] = {}
        self.threads = [threading.Thread(target=self._write, args=(n,)) for n in range(4)]

    def _write(self, n: int) -> None:
        with kittenfs.Client(self.orders[n], token=TOKEN, timeout=httpx.Timeout(60)) as client:
            for i in range(3000):
                if self.stop.is_set():
                    return
                key, value = f"/cut/{n}/{i}", os.urandom(100 + i * 997 % 50_000)
                try:
                    client.put(key, value)
                    self.acknowledged[key] = value
                except kittenfs.KittenError:
                    self.failed[key] = value

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_a_master_cut_off_from_etcd_gives_up_its_duties_and_loses_nothing(
    masters: tuple[Hosts, str, str],
) -> None:
    net, first, second = masters
    wait(
        lambda: info(first)["duties"] != "" and info(first)["duties"] == info(second)["duties"], 60
    )
    # The victim is the holder of the duties: the other must take them over.
    holder = info(first)["duties"]
    victim, a, b = (
        (A, first, second) if holder == info(first)["master"]["id"] else (B, second, first)
    )
    a_id, b_id = holder, info(b)["master"]["id"]
    with Writers(a, b) as writers:
        wait(lambda: len(writers.acknowledged) >= 40, 120)
        net.blackhole(victim, ETCD)  # the victim reaches its clients and workers, not etcd
        cut = time.monotonic()
        wait(lambda: info(b)["duties"] == b_id, 120)
        took = time.monotonic() - cut
        wait(lambda: a_id not in [m["id"] for m in info(b)["masters"]], 90)
        failed_before = len(writers.failed)
        wait(lambda: len(writers.failed) > failed_before, 120)  # the victim answers errors
        acked = len(writers.acknowledged)
        wait(lambda: len(writers.acknowledged) >= acked + 20, 120)  # the other goes on
        net.blackhole(victim, ETCD, on=False)
        wait(lambda: info(a)["duties"] == b_id, 120)  # the victim is back, and follows
        back = len(writers.acknowledged)
        wait(lambda: len(writers.acknowledged) >= back + 40, 120)
    print(
        f"duties taken over {took:.1f} s after the cut; {len(writers.acknowledged)} "
        f"acknowledged, {len(writers.failed)} failed or unknown"
    )
    assert took < 30, took
    for url in (a, b):
        with httpx.Client(base_url=url, timeout=30, headers=AUTH) as http:
            for key, value in writers.acknowledged.items():
                got = http.get(key, params={"direct": ""})
                assert got.status_code == 200 and got.content == value, (url, key)
            for key, value in writers.failed.items():
                got = http.get(key, params={"direct": ""})
                assert got.status_code == 404 or got.content == value, (url, key)
