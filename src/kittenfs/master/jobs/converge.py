"""Converge jobs: rebalance, repair and drain run the move protocol (move.py) over every key;
they differ only in how hard they look at the copies (a repair reads every byte).  The repair
queue runs it for the keys whose copies were found damaged, as they come.
"""

import asyncio
import logging

from ...config import JobOptions
from ...errors import NotEnoughWorkers
from ...records import CopyState, IndexRecord
from ..damage import Damage
from ..index import HELD, Space
from ..move import Mover, Outcome, Plan
from ..transport import check_copy
from . import Job, Throttle

log = logging.getLogger("kittenfs.master")

#: Keys looked at, at once, by one job, by default (config.py).
DEFAULT_CONCURRENCY = JobOptions.concurrency
#: Keys read from the index per page while walking it.
PAGE = 500
#: Copies asked about at once by a recheck of a worker.
RECHECK_BATCH = 64


class Converger:
    """Moves and repairs replicas, one key at a time, for rebalance and repair jobs."""

    def __init__(self, mover: Mover) -> None:
        self.mover = mover
        self.index = mover.index

    async def run(
        self,
        job: Job,
        deep: bool,
        dry_run: bool,
        concurrency: int,
        throttle: Throttle,
        only_worker: int | None = None,
    ) -> None:
        """Converge every live and unlinked key (with ``only_worker``, only the keys with a
        replica there), counting what was found and fixed in ``job``."""
        await self._pass(job, deep, dry_run, concurrency, throttle, only_worker)
        # A drain runs again while keys still name the worker (a write that chose it just
        # before the drain began), as long as each pass makes progress.
        if only_worker is None or dry_run:
            return
        left = await self._naming(only_worker)
        while left:
            job.found["passed_again"] += left
            await self._pass(job, deep, dry_run, concurrency, throttle, only_worker)
            left, before = await self._naming(only_worker), left
            if left >= before:
                break

    async def _naming(self, worker: int) -> int:
        """Count the live and unlinked keys with a replica on ``worker``."""
        return sum([worker in record.replicas async for _, record in self.index.all_current()])

    async def _pass(
        self,
        job: Job,
        deep: bool,
        dry_run: bool,
        concurrency: int,
        throttle: Throttle,
        only_worker: int | None,
    ) -> None:
        job.items_total += sum([1 async for _ in self.index.all_current()])
        slots = asyncio.Semaphore(max(1, concurrency))
        running: set[asyncio.Task[None]] = set()

        def finished(done: asyncio.Task[None]) -> None:
            running.discard(done)
            slots.release()

        try:
            for space in HELD:
                start = ""
                while True:
                    keys, start = await self.index.keys(space, "", start, PAGE)
                    for key in keys:
                        await slots.acquire()
                        task = asyncio.create_task(
                            self._one(job, space, key, deep, dry_run, throttle, only_worker)
                        )
                        running.add(task)
                        task.add_done_callback(finished)
                    if not start:
                        break
            await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _one(
        self,
        job: Job,
        space: Space,
        key: str,
        deep: bool,
        dry_run: bool,
        throttle: Throttle,
        only_worker: int | None,
    ) -> None:
        try:
            record = await self.index.get(space, key)
            if record is not None and only_worker in (None, *record.replicas):
                copied = await self.converge(job, space, record, deep, dry_run)
                job.bytes_done += copied
                await throttle.take(1, copied)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            job.error(f"{key}: {type(exc).__name__}: {exc}")
        finally:
            job.items_done += 1

    async def converge(
        self, job: Job, space: Space, record: IndexRecord, deep: bool, dry_run: bool
    ) -> int:
        """Bring one key to its target replicas; return the bytes copied."""
        try:
            plan = await self.mover.plan(record, deep)
        except NotEnoughWorkers as exc:
            job.error(f"{record.key}: {exc.detail}")
            return 0
        _count_found(job, record, plan)
        if plan.settled(record):
            return 0
        if not plan.good:
            job.found["lost" if not plan.down else "unavailable"] += 1
            return 0
        if dry_run:
            return 0
        outcome = await self.mover.move(space, record, plan)
        if outcome is not Outcome.MOVED:
            job.found[outcome.value] += 1
            return 0
        dropped = [i for i in record.replicas if i not in plan.target]
        job.fixed["keys"] += 1
        job.fixed["copies"] += len(plan.needs)
        job.fixed["dropped"] += len(dropped)
        return record.size * len(plan.needs)


def _count_found(job: Job, record: IndexRecord, plan: Plan) -> None:
    job.found.update(
        {
            name: len(found)
            for name, found in (
                ("missing", plan.missing),
                ("corrupt", plan.corrupt),
                ("down", plan.down),
            )
            if found
        }
    )
    if len(plan.good) < len(plan.target):
        job.found["under_replicated"] += 1
    if set(record.replicas) != set(plan.target):
        job.found["misplaced"] += 1
    if plan.settled(record):
        job.found["ok"] += 1


class RepairQueue:
    """Keys with damaged replicas (reported corrupt by a worker, or found missing by a read),
    repaired in the background one by one.

    Its counters (a Job that never ends) show in ``/_cluster`` under ``repairs``.
    """

    def __init__(self, converger: Converger) -> None:
        self.converger = converger
        self.keys: set[str] = set()
        self.wakeup = asyncio.Event()
        self.job = Job("scrub-repairs", {})
        self.damage = Damage(
            lambda worker, record: check_copy(converger.mover.transport, worker, record, False),
            self.add,
        )
        self._rechecks: dict[int, asyncio.Task[None]] = {}

    def add(self, keys: list[str]) -> None:
        """Queue keys for a deep repair."""
        self.keys.update(keys)
        self.job.found["reported"] += len(keys)
        self.wakeup.set()

    async def run_forever(self) -> None:
        """Repair queued keys as they come (a repair job running meanwhile does the same)."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.keys:
                key = self.keys.pop()
                found = await self.converger.index.current(key)
                try:
                    if found is not None:
                        await self.converger.converge(self.job, *found, True, False)
                    self.damage.repaired(key)
                except Exception as exc:
                    self.job.error(f"{key}: {type(exc).__name__}: {exc}")
                self.job.items_done += 1

    def recheck(self, worker: int) -> bool:
        """Check, in the background, worker ``worker``'s copy of every key that names it (a
        HEAD each), and mark the missing or corrupt ones damaged (so they are repaired):
        for a worker whose store lost blobs.  Return False if one runs for it already."""
        if worker in self._rechecks:
            return False
        task = asyncio.create_task(self._recheck(worker))
        self._rechecks[worker] = task
        task.add_done_callback(lambda _: self._rechecks.pop(worker, None))
        return True

    async def _recheck(self, worker: int) -> None:
        batch: list[IndexRecord] = []
        async for _, record in self.converger.index.all_current():
            if worker in record.replicas:
                batch.append(record)
            if len(batch) == RECHECK_BATCH:
                await self._recheck_batch(worker, batch)
                batch = []
        await self._recheck_batch(worker, batch)
        log.info("recheck of worker %d done: %s", worker, dict(self.job.found))

    async def _recheck_batch(self, worker: int, records: list[IndexRecord]) -> None:
        states = await asyncio.gather(
            *(check_copy(self.converger.mover.transport, worker, r, False) for r in records),
            return_exceptions=True,
        )
        for record, state in zip(records, states, strict=False):
            self.job.found["rechecked"] += 1
            if state in (CopyState.MISSING, CopyState.CORRUPT):
                self.job.found[f"recheck_{state}"] += 1
                self.damage.mark(record, worker)

    async def close(self) -> None:
        """Stop the rechecks and the checks under way."""
        for task in list(self._rechecks.values()):
            task.cancel()
        await asyncio.gather(*self._rechecks.values(), return_exceptions=True)
        await self.damage.close()

    def describe(self) -> dict[str, object]:
        """Return the queue's length and counters, for /_cluster."""
        return {
            "queued": len(self.keys),
            "done": self.job.items_done,
            "rechecking": sorted(self._rechecks),
            "found": dict(self.job.found),
            "fixed": dict(self.job.fixed),
            "errors": self.job.errors[-10:],
        }
