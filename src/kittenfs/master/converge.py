"""Converge: bring a key's replicas to where they belong.  Rebalance and repair are this step
run over every key; they differ only in how hard they look at the copies.

For a key whose record names version v on replicas S:

1. the target T is the first R workers of the key's rendezvous order that are up;
2. the good copies G are the replicas in S that are up and hold v intact.  Rebalance asks each
   worker for the blob's metadata (``HEAD /blob/<id>``: header, size and, for inline values,
   MD5); repair has each worker read every byte (``GET /check/<id>``);
3. if S is T and every copy is good, there is nothing to do.  If no copy is good, the key is
   reported lost (or unavailable while a replica is down) and left alone;
4. a move record ``p:<blob>@move`` names the workers in T that lack a good copy, so a crash
   from here on leaves their copies as garbage, never as unreferenced bytes;
5. each of them gets a copy streamed from a good one; its size and MD5 must be the record's;
6. under the key's lock, and only if the key still has the same record, the new copies are
   checked again, and so is every byte of the copies that stay (before any replica is
   dropped, the kept ones must be known good, not just listed).  Then one synced batch,
   which a cancellation cannot cut short, switches the record to T, drops the move record and
   leaves a garbage entry for each replica in S outside T.  If the key was written or deleted
   meanwhile, the copies become garbage instead: a PUT or DELETE always wins over a move.
   One key is moved by one move at a time;
7. the reaper deletes the dropped replicas after REPLACED_GRACE, so reads redirected to them
   just before the switch still finish; it never deletes a copy the live record names.

Every step can be cut off and run again: the result converges.
"""

import asyncio
import dataclasses
import logging
import random
from dataclasses import dataclass

import aiohttp

from ..config import JobOptions
from ..placement import blob_id
from ..records import IndexRecord
from . import replica_io
from .damage import Damage
from .index import HELD, Space
from .jobs import Job, Throttle
from .membership import NotEnoughWorkers
from .write_path import Store, to_completion

log = logging.getLogger("kittenfs.master")

#: Keys looked at, at once, by one job, by default (config.py).
DEFAULT_CONCURRENCY = JobOptions.concurrency
#: Keys read from the index per page while walking it.
PAGE = 500
#: Copies asked about at once by a recheck of a worker.
RECHECK_BATCH = 64


@dataclass(frozen=True)
class Plan:
    """What converging one key would do."""

    target: tuple[int, ...]
    good: tuple[int, ...]
    missing: tuple[int, ...]  # up, but without the blob
    corrupt: tuple[int, ...]  # up, holding bytes that do not match
    down: tuple[int, ...]

    @property
    def needs(self) -> tuple[int, ...]:
        """The target workers that must receive a copy."""
        return tuple(index for index in self.target if index not in self.good)


class Converger:
    """Moves and repairs replicas, one key at a time, for rebalance and repair jobs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = store.index
        self.membership = store.membership
        self.session = store.session

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
                    keys, start = self.index.keys(space, "", start, PAGE)
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
            record = self.index.get(space, key)
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

    async def plan(self, record: IndexRecord, deep: bool) -> Plan:
        """Look at a key's copies and work out where they should be."""
        target = tuple(self.membership.choose_replicas(record.key))
        up = [index for index in record.replicas if self.membership.is_up(index)]
        states = await asyncio.gather(*(self.store.copy_state(index, record, deep) for index in up))
        by_state: dict[str, list[int]] = {"good": [], "missing": [], "corrupt": []}
        for index, state in zip(up, states, strict=False):
            by_state[state].append(index)
        down = tuple(index for index in record.replicas if index not in up)
        return Plan(
            target,
            tuple(by_state["good"]),
            tuple(by_state["missing"]),
            tuple(by_state["corrupt"]),
            down,
        )

    async def converge(
        self, job: Job, space: Space, record: IndexRecord, deep: bool, dry_run: bool
    ) -> int:
        """Bring one key to its target replicas; return the bytes copied."""
        try:
            plan = await self.plan(record, deep)
        except NotEnoughWorkers as exc:
            job.error(f"{record.key}: {exc.detail}")
            return 0
        _count_found(job, record, plan)
        if not plan.needs and set(record.replicas) == set(plan.target):
            return 0
        if not plan.good:
            job.found["lost" if not plan.down else "unavailable"] += 1
            return 0
        if dry_run:
            return 0
        if record.key in self.store.moving:  # a job and the repair queue met on this key
            job.found["busy"] += 1
            return 0
        self.store.moving.add(record.key)
        try:
            return await self._move(job, space, record, plan)
        finally:
            self.store.moving.discard(record.key)

    async def _move(self, job: Job, space: Space, record: IndexRecord, plan: Plan) -> int:
        """Copy, check, then switch the record (steps 4 to 6 above); return the bytes copied."""
        move = dataclasses.replace(record, replicas=plan.needs, size=-1)
        if plan.needs:
            await self.index.begin_move(move)
        try:
            for dest in plan.needs:
                await self._copy(record, plan.good, dest)
        except BaseException:
            await asyncio.shield(self._abandon(record, move))
            raise
        dropped = tuple(i for i in record.replicas if i not in plan.target)
        kept = tuple(i for i in plan.target if i not in plan.needs)
        async with self.store.locks.hold(record.key):
            current = self.index.get(space, record.key) == record
            # Each new copy still in place; before any copy is dropped, every byte of the
            # copies that stay and were not just written (the last good copy must not go).
            if not (
                current
                and await self._all_good(record, plan.needs, deep=False)
                and (not dropped or await self._all_good(record, kept, deep=True))
            ):
                job.found["changed_meanwhile" if not current else "not_verified"] += 1
                await to_completion(self.store.abandon_move(move))
                return 0
            moved = dataclasses.replace(record, replicas=plan.target)
            await to_completion(self.index.commit_move(space, record, moved, dropped))
            self.store.cache.invalidate(record.key)
        job.fixed["keys"] += 1
        job.fixed["copies"] += len(plan.needs)
        job.fixed["dropped"] += len(dropped)
        return record.size * len(plan.needs)

    async def _abandon(self, record: IndexRecord, move: IndexRecord) -> None:
        async with self.store.locks.hold(record.key):
            await self.store.abandon_move(move)

    async def _all_good(self, record: IndexRecord, workers: tuple[int, ...], deep: bool) -> bool:
        """Return True if every one of ``workers`` holds a good copy of ``record`` (``deep``:
        every byte read and checked; otherwise its metadata)."""
        states = await asyncio.gather(
            *(self.store.copy_state(index, record, deep) for index in workers),
            return_exceptions=True,
        )
        return all(state == "good" for state in states)

    async def _copy(self, record: IndexRecord, sources: tuple[int, ...], dest: int) -> None:
        """Stream the value to ``dest`` from the first good source that serves it whole."""
        blob = blob_id(record.key, record.version)
        failures = []
        for source in random.sample(sources, len(sources)):
            url = replica_io.blob_url(self.membership.url(source), blob)
            try:
                async with self.session.get(url) as resp:
                    if resp.status != 200:
                        failures.append(f"worker {source} answered {resp.status}")
                        continue
                    stored = await replica_io.upload(
                        self.session,
                        self.membership.url(dest),
                        blob,
                        record.key,
                        record.version,
                        resp.content.iter_chunked(replica_io.COPY_CHUNK),
                        record.size,
                    )
            except (aiohttp.ClientError, OSError, replica_io.ReplicaError) as exc:
                failures.append(f"worker {source} -> {dest}: {exc}")
                continue
            if stored == (record.size, record.md5):
                return
            failures.append(f"worker {dest} stored {stored} from worker {source}")
        raise replica_io.ReplicaError(
            f"no copy of {record.key!r} reached worker {dest}: " + "; ".join(failures)
        )


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
    if not plan.needs and set(record.replicas) == set(plan.target):
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
            lambda worker, record: converger.store.copy_state(worker, record, deep=False), self.add
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
                found = self.converger.index.current(key)
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
            *(self.converger.store.copy_state(worker, r, deep=False) for r in records),
            return_exceptions=True,
        )
        for record, state in zip(records, states, strict=False):
            self.job.found["rechecked"] += 1
            if state in ("missing", "corrupt"):
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
