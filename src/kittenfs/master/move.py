"""The move protocol: bring one key's replicas to where they belong, never losing a copy.

For a key whose record names version v on replicas S:

1. the target T is the first R workers of the key's rendezvous order that are up;
2. the good copies G are the replicas in S that are up and hold v intact.  A shallow look asks
   each worker for the blob's metadata (``HEAD /blob/<id>``: header, size and, for inline
   values, MD5); a deep one has each worker read every byte (``GET /check/<id>``);
3. if S is T and every copy is good, there is nothing to do.  If no copy is good, the key is
   lost (or unavailable while a replica is down) and left alone;
4. a move record ``p:<blob>@move`` names the workers in T that lack a good copy, so a crash
   from here on leaves their copies as garbage, never as unreferenced bytes;
5. each of them gets a copy streamed from a good one, with the record's metadata (which the
   copy keeps, for ``kittenfs rebuild``); its size and MD5 must be the record's;
6. under the key's lock, and only if the key still has the same record, the new copies are
   checked again, and so is every byte of the copies that stay (before any replica is
   dropped, the kept ones must be known good, not just listed).  Then one synced batch,
   which a cancellation cannot cut short, switches the record to T, drops the move record and
   leaves a garbage entry for each replica in S outside T.  If the key was written or deleted
   meanwhile, the copies become garbage instead: a PUT or DELETE always wins over a move.
   One key is moved by one move at a time (``Mover.moving``);
7. the reaper (garbage.py) deletes the dropped replicas after its grace, so reads redirected
   to them just before the switch still finish; it never deletes a copy the live record names.

Every step can be cut off and run again: the result converges.  Jobs (rebalance, repair,
drain: jobs/converge.py) and the repair queue run this protocol key by key.
"""

import asyncio
import dataclasses
import random
from dataclasses import dataclass
from enum import StrEnum

from ..errors import ReplicaError
from ..locks import KeyLocks
from ..records import CopyState, IndexRecord
from .cache import ValueCache
from .garbage import Reaper
from .index import Index, Raced, Space
from .membership import Membership
from .transport import ReplicaTransport, check_copy
from .write_path import to_completion


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

    def settled(self, record: IndexRecord) -> bool:
        """Return True if ``record`` needs no move: every target holds a good copy, and only
        the targets are named."""
        return not self.needs and set(record.replicas) == set(self.target)


class Outcome(StrEnum):
    """How a move ended."""

    MOVED = "moved"
    BUSY = "busy"  # another move (a job, the repair queue) has the key
    CHANGED_MEANWHILE = "changed_meanwhile"  # the key was written or deleted: copies dropped
    NOT_VERIFIED = "not_verified"  # a copy failed its check before the switch


class Mover:
    """Moves and repairs the replicas of one key at a time (steps 1 to 6 above)."""

    def __init__(
        self,
        index: Index,
        membership: Membership,
        transport: ReplicaTransport,
        locks: KeyLocks,
        cache: ValueCache,
        reaper: Reaper,
    ) -> None:
        self.index = index
        self.membership = membership
        self.transport = transport
        self.locks = locks
        self.cache = cache
        self.reaper = reaper
        self.moving: set[str] = set()  # keys a move (job or repair queue) is working on

    async def plan(self, record: IndexRecord, deep: bool) -> Plan:
        """Look at a key's copies and work out where they should be (steps 1 and 2)."""
        target = tuple(self.membership.choose_replicas(record.key))
        up = [index for index in record.replicas if self.membership.is_up(index)]
        states = await asyncio.gather(
            *(check_copy(self.transport, index, record, deep) for index in up)
        )
        by_state: dict[CopyState, list[int]] = {state: [] for state in CopyState}
        for index, state in zip(up, states, strict=False):
            by_state[state].append(index)
        down = tuple(index for index in record.replicas if index not in up)
        return Plan(
            target,
            tuple(by_state[CopyState.GOOD]),
            tuple(by_state[CopyState.MISSING]),
            tuple(by_state[CopyState.CORRUPT]),
            down,
        )

    async def move(self, space: Space, record: IndexRecord, plan: Plan) -> Outcome:
        """Copy, check, then switch the record to ``plan.target`` (steps 4 to 6)."""
        if record.key in self.moving:
            return Outcome.BUSY
        self.moving.add(record.key)
        try:
            return await self._move(space, record, plan)
        finally:
            self.moving.discard(record.key)

    async def _move(self, space: Space, record: IndexRecord, plan: Plan) -> Outcome:
        move = dataclasses.replace(record, replicas=plan.needs, size=-1)
        if plan.needs:
            # Under the key's lock: a reaper deleting old garbage of this very version
            # either finishes first or sees the move in flight and spares its copies.
            async with self.locks.hold(record.key):
                try:
                    await self.index.begin_move(move)
                except Raced:  # another master moves this very version
                    return Outcome.BUSY
        try:
            for dest in plan.needs:
                await self._copy(record, plan.good, dest)
        except BaseException:
            await asyncio.shield(self._abandon(move))
            raise
        dropped = tuple(i for i in record.replicas if i not in plan.target)
        kept = tuple(i for i in plan.target if i not in plan.needs)
        async with self.locks.hold(record.key):
            current = await self.index.get(space, record.key) == record
            # Each new copy still in place; before any copy is dropped, every byte of the
            # copies that stay and were not just written (the last good copy must not go).
            if not (
                current
                and await self._all_good(record, plan.needs, deep=False)
                and (not dropped or await self._all_good(record, kept, deep=True))
            ):
                await to_completion(self.reaper.abandon_move(move))
                return Outcome.CHANGED_MEANWHILE if not current else Outcome.NOT_VERIFIED
            moved = dataclasses.replace(record, replicas=plan.target)
            try:
                await to_completion(self.index.commit_move(space, record, moved, dropped))
            except Raced:  # another master changed the key (or took this one for dead)
                await to_completion(self.reaper.abandon_move(move))
                return Outcome.CHANGED_MEANWHILE
            self.cache.invalidate(record.key)
        return Outcome.MOVED

    async def _abandon(self, move: IndexRecord) -> None:
        async with self.locks.hold(move.key):
            await self.reaper.abandon_move(move)

    async def _all_good(self, record: IndexRecord, workers: tuple[int, ...], deep: bool) -> bool:
        """Return True if every one of ``workers`` holds a good copy of ``record`` (``deep``:
        every byte read and checked; otherwise its metadata)."""
        states = await asyncio.gather(
            *(check_copy(self.transport, index, record, deep) for index in workers),
            return_exceptions=True,
        )
        return all(state is CopyState.GOOD for state in states)

    async def _copy(self, record: IndexRecord, sources: tuple[int, ...], dest: int) -> None:
        """Stream the value to ``dest`` from the first good source that serves it whole."""
        failures = []
        for source in random.sample(sources, len(sources)):
            try:
                stored = await self.transport.copy(record, source, dest)
            except ReplicaError as exc:
                failures.append(f"worker {source} -> {dest}: {exc}")
                continue
            if stored == (record.size, record.md5):
                return
            failures.append(f"worker {dest} stored {stored} from worker {source}")
        raise ReplicaError(
            f"no copy of {record.key!r} reached worker {dest}: " + "; ".join(failures)
        )

    async def adopt(self, worker: int) -> dict[str, int]:
        """Add ``worker`` to the replicas of every key whose current version it holds intact
        (listed with the record's MD5): a clone's copies become replicas."""
        self.membership.require_up(worker)
        adopted = total = 0
        async for blob in self.transport.list_blobs(worker):
            total += 1
            adopted += await self.add_replica(blob.key, blob.version, blob.md5, worker)
        return {"adopted": adopted, "blobs": total}

    async def add_replica(self, key: str, version: str, md5: str, worker: int) -> bool:
        """Add ``worker`` to the replicas of ``key`` if it is the key's current (live or
        unlinked) ``version`` with this MD5, and the worker holds it right now (checked under
        the key's lock: a listing can be stale); return whether it was added."""
        async with self.locks.hold(key):
            found = await self.index.current(key)
            if found is None:
                return False
            space, record = found
            if (
                record.version != version
                or record.md5 != md5
                or worker in record.replicas
                or not await self._holds(worker, record)
            ):
                return False
            try:
                await to_completion(
                    self.index.update(
                        space,
                        record,
                        dataclasses.replace(record, replicas=(*record.replicas, worker)),
                    )
                )
            except Raced:  # written again meanwhile, by another master
                return False
            self.cache.invalidate(key)
            return True

    async def _holds(self, worker: int, record: IndexRecord) -> bool:
        """Return True if ``worker`` holds ``record``'s blob with its MD5 (a HEAD)."""
        try:
            return await check_copy(self.transport, worker, record, deep=False) is CopyState.GOOD
        except ReplicaError:
            return False
