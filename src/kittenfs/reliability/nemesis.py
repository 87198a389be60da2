"""The nemesis: faults injected at random moments while the workload runs.

One fault at a time, at most ``max_faults`` of them, each healed before the next:

- ``kill_worker``: kill -9 a worker, restart it 1-3 s later;
- ``kill_master``: kill -9 the master, restart it 1-3 s later;
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
from . import attacks

FAULTS = (
    "kill_worker",
    "kill_master",
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


class Nemesis:
    """Injects faults into a LocalCluster (child 0 is the master, 1 + i worker i)."""

    def __init__(self, cluster: LocalCluster, rng: random.Random, faults: tuple[str, ...]) -> None:
        self.cluster = cluster
        self.rng = rng
        self.faults = faults
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
        return await self._kill_restart(child, self.rng.uniform(1, 3)) | {"worker": child - 1}

    async def kill_master(self) -> dict[str, Any]:
        return await self._kill_restart(0, self.rng.uniform(1, 3))

    async def pause_worker(self) -> dict[str, Any]:
        child = self._worker()
        self.cluster.signal(child, signal.SIGSTOP)
        self.paused.add(child)
        pause = self.rng.uniform(1, 4)
        await asyncio.sleep(pause)
        self.cluster.signal(child, signal.SIGCONT)
        self.paused.discard(child)
        return {"worker": child - 1, "seconds": round(pause, 2)}

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
        return {"worker": child - 1, "seconds_full": round(hold, 2)}

    async def cut_worker(self) -> dict[str, Any]:
        assert self.cluster.network is not None, "cut_worker needs hosts of their own"
        child = self._worker()
        self.cluster.network.cut(child)
        self.cut.add(child)
        outage = self.rng.uniform(2, 8)
        await asyncio.sleep(outage)
        self.cluster.network.restore(child)
        self.cut.discard(child)
        return {"worker": child - 1, "seconds": round(outage, 2)}

    async def lose_metadata(self) -> dict[str, Any]:
        child = self._worker()
        index = self.cluster.data / f"worker-{child - 1}" / "index"
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
        return {"worker": child - 1, "leveldb": how}

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

    async def _kill_restart(self, child: int, down: float) -> dict[str, Any]:
        self.cluster.signal(child, signal.SIGKILL)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.cluster.restart, child)
        return {"seconds_down": round(down, 2)}

    def _worker(self) -> int:
        return self.rng.randrange(1, len(self.cluster.children))

    def _blob_file(self) -> Path | None:
        worker = self.rng.randrange(self.cluster.workers)
        files = sorted((self.cluster.data / f"worker-{worker}" / "blobs").glob("*/*/*"))
        return self.rng.choice(files) if files else None
