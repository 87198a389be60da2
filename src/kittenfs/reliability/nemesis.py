"""The nemesis: faults injected at random moments while the workload runs.

One fault at a time, at most ``max_faults`` of them, each healed before the next:

- ``kill_worker``: kill -9 a worker, restart it 1-3 s later;
- ``kill_master``: kill -9 the master (one of them, if several share the index), restart it
  1-3 s later;
- ``pause_master``: SIGSTOP one of several masters for 2-20 s (so sometimes past the 15 s
  after which the others take its writes in flight for dead), then SIGCONT it;
- ``kill_etcd_leader``: kill -9 the leader of the index's etcd cluster, restart it 2-5 s
  later (an index on etcd only);
- ``pause_worker``: SIGSTOP a worker, SIGCONT it 1-4 s later (it misses heartbeats);
- ``corrupt_blob``: overwrite the end of a random blob file on a random worker;
- ``delete_blob``: delete a random blob file on a random worker;
- ``fill_disk``: restart a worker with a capacity of 1 byte, so it is full (it refuses every
  value as a full disk does, with 507) for 2-4 s, then restart it without the limit;
- ``cut_worker``: pull a worker's cable for 2-8 s (so sometimes it outlasts the master's
  ``--down-after``): nothing reaches it or leaves it, and connections stall rather than fail.
  Only when every process runs on a host of its own (network namespaces, root only);
- ``lose_metadata``: kill -9 a worker, delete or damage its LevelDB, restart it: it must
  rebuild what it can from its files, and the master repair the rest;
- ``attack``: send the hostile requests of attacks.py (a hijacked registration, a forged
  blob, hostile JSON and headers...): each must be refused, and harm nothing.

Every fault is logged with its time, so a report can say what happened when.
"""

import asyncio
import os
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from ..cluster import LocalCluster
from ..localetcd import LocalEtcd
from . import attacks

FAULTS = (
    "kill_worker",
    "kill_master",
    "pause_master",
    "kill_etcd_leader",
    "pause_worker",
    "corrupt_blob",
    "delete_blob",
    "fill_disk",
    "cut_worker",
    "lose_metadata",
    "attack",
)
#: The faults that need the processes on hosts of their own.
NETWORK_FAULTS = ("cut_worker",)
#: The faults that need several masters on a shared index, and an index on etcd.
MASTERS_FAULTS = ("pause_master",)
ETCD_FAULTS = ("kill_etcd_leader",)


class Nemesis:
    """Injects faults into a LocalCluster (children 0 .. M-1 are its M masters, M + i
    worker i) and, given, the etcd cluster that holds its index."""

    def __init__(
        self,
        cluster: LocalCluster,
        rng: random.Random,
        faults: tuple[str, ...],
        etcd: LocalEtcd | None = None,
    ) -> None:
        self.cluster = cluster
        self.rng = rng
        self.faults = faults
        self.etcd = etcd
        self.log: list[dict[str, Any]] = []
        self.paused: set[int] = set()
        self.cut: set[int] = set()
        self.attacks: list[dict[str, object]] = []  # what each attack fault got

    async def run(self, duration: float, max_faults: int) -> None:
        """Inject up to ``max_faults`` faults within ``duration`` seconds, then heal all."""
        deadline = time.monotonic() + duration
        try:
            while len(self.log) < max_faults and time.monotonic() < deadline - 4:
                await asyncio.sleep(self.rng.uniform(0.5, 2.5))
                fault = self.rng.choice(self.faults)
                self.log.append(
                    {"fault": fault, "at": time.monotonic(), **await getattr(self, fault)()}
                )
        finally:
            await self.heal()

    async def kill_worker(self) -> dict[str, Any]:
        child = self._worker()
        down = self.rng.uniform(1, 3)
        return await self._kill_restart(child, down) | {"worker": self._index(child)}

    async def kill_master(self) -> dict[str, Any]:
        child = self.rng.randrange(self.cluster.masters)
        return await self._kill_restart(child, self.rng.uniform(1, 3)) | {"master": child}

    async def pause_worker(self) -> dict[str, Any]:
        child = self._worker()
        return await self._pause(child, self.rng.uniform(1, 4)) | {"worker": self._index(child)}

    async def pause_master(self) -> dict[str, Any]:
        child = self.rng.randrange(self.cluster.masters)
        return await self._pause(child, self.rng.uniform(2, 20)) | {"master": child}

    async def kill_etcd_leader(self) -> dict[str, Any]:
        assert self.etcd is not None, "kill_etcd_leader needs the index on etcd"
        leader = await asyncio.to_thread(self.etcd.leader)
        if leader is None:
            return {"skipped": "no etcd leader"}
        self.etcd.signal(leader, signal.SIGKILL)
        down = self.rng.uniform(2, 5)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.etcd.start_member, leader)
        return {"member": leader, "seconds_down": round(down, 2)}

    async def _pause(self, child: int, seconds: float) -> dict[str, Any]:
        self.cluster.signal(child, signal.SIGSTOP)
        self.paused.add(child)
        await asyncio.sleep(seconds)
        self.cluster.signal(child, signal.SIGCONT)
        self.paused.discard(child)
        return {"seconds": round(seconds, 2)}

    async def corrupt_blob(self) -> dict[str, Any]:
        path = self._blob_file()
        if path is None:
            return {"skipped": "no blob file"}
        with path.open("r+b") as handle:
            handle.seek(-min(64, os.fstat(handle.fileno()).st_size), os.SEEK_END)
            handle.write(os.urandom(16))
        return {"file": path.name}

    async def delete_blob(self) -> dict[str, Any]:
        path = self._blob_file()
        if path is None:
            return {"skipped": "no blob file"}
        path.unlink(missing_ok=True)
        return {"file": path.name}

    async def fill_disk(self) -> dict[str, Any]:
        child = self._worker()
        hold = self.rng.uniform(2, 4)
        self.cluster.signal(child, signal.SIGTERM)
        await asyncio.to_thread(self.cluster.restart, child, ("--capacity-bytes", "1"))
        await asyncio.sleep(hold)
        self.cluster.signal(child, signal.SIGTERM)
        await asyncio.to_thread(self.cluster.restart, child)
        return {"worker": self._index(child), "seconds_full": round(hold, 2)}

    async def cut_worker(self) -> dict[str, Any]:
        assert self.cluster.network is not None, "cut_worker needs hosts of their own"
        child = self._worker()
        self.cluster.network.cut(child)
        self.cut.add(child)
        outage = self.rng.uniform(2, 8)
        await asyncio.sleep(outage)
        self.cluster.network.restore(child)
        self.cut.discard(child)
        return {"worker": self._index(child), "seconds": round(outage, 2)}

    async def lose_metadata(self) -> dict[str, Any]:
        child = self._worker()
        index = self.cluster.data / f"worker-{self._index(child)}" / "index"
        self.cluster.signal(child, signal.SIGKILL)
        await asyncio.to_thread(self.cluster.children[child].wait)
        how = self.rng.choice(("delete", "damage"))
        if how == "delete":
            shutil.rmtree(index, ignore_errors=True)
        else:
            for log in index.glob("*.log"):
                with log.open("r+b") as handle:
                    handle.seek(min(7, log.stat().st_size))
                    handle.write(os.urandom(32))
        await asyncio.to_thread(self.cluster.restart, child)
        return {"worker": self._index(child), "leveldb": how}

    async def attack(self) -> dict[str, Any]:
        results = await asyncio.to_thread(attacks.launch, self.cluster.url, self.cluster.headers)
        self.attacks.append(results)
        return {"refused": attacks.refused(results)}

    async def heal(self) -> None:
        """Resume paused workers, restore cut links and restart any process not running."""
        for child in list(self.paused):
            self.cluster.signal(child, signal.SIGCONT)
        self.paused.clear()
        for child in list(self.cut):
            assert self.cluster.network is not None
            self.cluster.network.restore(child)
        self.cut.clear()
        for child, process in enumerate(self.cluster.children):
            if process.poll() is not None:
                await asyncio.to_thread(self.cluster.restart, child)
        if self.etcd is not None:
            for member, pid in enumerate(self.etcd.pids):
                if not pid:
                    await asyncio.to_thread(self.etcd.start_member, member)

    async def _kill_restart(self, child: int, down: float) -> dict[str, Any]:
        self.cluster.signal(child, signal.SIGKILL)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.cluster.restart, child)
        return {"seconds_down": round(down, 2)}

    def _worker(self) -> int:
        """Return a random worker's child number."""
        return self.rng.randrange(self.cluster.masters, len(self.cluster.children))

    def _index(self, child: int) -> int:
        """Return the worker index of child ``child``."""
        return child - self.cluster.masters

    def _blob_file(self) -> Path | None:
        worker = self.rng.randrange(self.cluster.workers)
        files = sorted((self.cluster.data / f"worker-{worker}" / "blobs").glob("*/*/*"))
        return self.rng.choice(files) if files else None
