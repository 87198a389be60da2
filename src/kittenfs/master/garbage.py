"""Garbage: copies that no live or unlinked record needs any more, and the reaper that deletes them.

Garbage is made by the write path (a deleted or replaced version, a failed write's copies, a
write cut off by a crash: its pending record, turned into garbage at start) and by moves (a
replica dropped, a move's copies abandoned).  Each is an index entry (``d:<blob>``, or
``d:<blob>@<worker>`` for one replica) naming the copies still to delete.  The reaper deletes
them from their workers, and forgets the entry once every copy is gone; a worker that cannot
be reached keeps its entry, retried every REAP_INTERVAL seconds.  A replaced version is kept
``replaced_grace`` seconds first, for reads already redirected to it.  A copy that the key's
current record names again (a move put it back) is never deleted.

A DELETE is acknowledged once its garbage entry is durable in the index: the reaper owns the
copies from then on (``later``), and deletes them in the background, LATER_WORKERS at a time,
in the batches the transport sends each worker.  A crash before it is done leaves the entry,
which the next pass finds.  (Waiting for the workers made a DELETE cost two synced index
writes and a round of worker fsyncs instead of one index write: docs/performance.md.)
"""

import asyncio
import logging
import time
from collections.abc import Callable

from ..config import MasterConfig
from ..errors import StoreError
from ..locks import KeyLocks
from ..placement import blob_id
from ..records import IndexRecord
from .index import Index, Space
from .membership import Membership
from .transport import ReplicaTransport

log = logging.getLogger("kittenfs.master")

#: Seconds between background passes over the garbage records.
REAP_INTERVAL = 2.0
#: Seconds a version replaced by an overwrite (or a replica dropped by a move) stays on its
#: workers: reads that were redirected to it just before the change can still fetch it.
#: The default of the setting --replaced-grace (config.py).
REPLACED_GRACE = MasterConfig.replaced_grace
#: Deleted values whose copies wait for the background at most: past it, a DELETE waits for
#: room (memory stays bounded, and deletes cannot outrun the reaper for ever).
LATER_QUEUE = 4096
#: Failed writes and moves kept to be abandoned later (the index away) at most.
UNABANDONED_MAX = 100_000
#: Deleted values whose copies are deleted at the same time.
LATER_WORKERS = 32
#: Seconds between two readings of the workers for garbage on a worker not known here.
REREAD_WORKERS = 2.0
#: Seconds a move in flight to a copy just deleted is watched, for its commit (and how
#: many such watches run at once at most).
WATCH_MOVE = 60.0
WATCHES_MAX = 1000


class Reaper:
    """Deletes garbage copies from the workers: at once after a failed write or move, and
    in the background for the rest."""

    def __init__(
        self,
        index: Index,
        membership: Membership,
        transport: ReplicaTransport,
        locks: KeyLocks,
        replaced_grace: float = REPLACED_GRACE,
    ) -> None:
        self.index = index
        self.membership = membership
        self.transport = transport
        self.locks = locks
        self.replaced_grace = replaced_grace
        #: Whether the background passes over the garbage run here now (duties.py: on the
        #: one master holding the cluster's duties).  Removed values' copies are deleted by
        #: the master that removed them either way.
        self.sweeping: Callable[[], bool] = lambda: True
        #: Told of a copy deleted although the key's record names it again (state.py: the
        #: repair queue's damage marks), so that it is copied back at once.
        self.lost: Callable[[IndexRecord, int], None] = lambda record, worker: None
        self._workers_read = float("-inf")
        self._watches: set[asyncio.Task[None]] = set()
        self._later: asyncio.Queue[IndexRecord] = asyncio.Queue(LATER_QUEUE)
        #: Failed writes and moves whose pending record could not be turned into garbage
        #: (the engine was away): (record, is a move), tried again at each pass.
        self._unabandoned: list[tuple[IndexRecord, bool]] = []

    async def abandon(self, pending: IndexRecord) -> None:
        """Clean up after a failed write: its copies go, and its pending record with them.
        The caller holds the key's lock.  If the index cannot be reached, the write is kept
        to be abandoned by a later pass (its pending record would otherwise stay until this
        master starts again)."""
        try:
            await self.index.abandon_write(pending)
        except StoreError as exc:
            self._keep_unabandoned(pending, False, exc)
            return
        await self.delete(pending)

    async def abandon_move(self, move: IndexRecord) -> None:
        """Clean up after a failed move: each copy it made goes (but never one the live
        record names).  The caller holds the key's lock.  Kept for a later pass, as a write
        is, if the index cannot be reached."""
        try:
            entries = await self.index.abandon_move(move)
        except StoreError as exc:
            self._keep_unabandoned(move, True, exc)
            return
        for entry, record in entries:
            await self.delete(record, entry)

    def _keep_unabandoned(self, record: IndexRecord, move: bool, exc: StoreError) -> None:
        if len(self._unabandoned) >= UNABANDONED_MAX:
            log.error("failed %s of %r not abandoned (%s): too many wait already; its pending "
                      "record stays until this master starts again", "move" if move else "write",
                      record.key, exc)  # fmt: skip
            return
        log.warning("failed %s of %r not abandoned yet (%s); will retry",
                    "move" if move else "write", record.key, exc)  # fmt: skip
        self._unabandoned.append((record, move))

    async def abandon_again(self) -> int:
        """Abandon the failed writes and moves kept by ``abandon`` and ``abandon_move``
        while the index was away; return how many are still waiting."""
        waiting, self._unabandoned = self._unabandoned, []
        for record, move in waiting:
            async with self.locks.hold(record.key):
                await (self.abandon_move(record) if move else self.abandon(record))
        return len(self._unabandoned)

    async def delete(self, record: IndexRecord, entry: bytes | None = None) -> bool:
        """Delete a garbage version's blob on each replica; forget it once all are gone.

        ``entry`` is the garbage entry's own key (by default the version's ``d:<blob>``).
        A replica that the key's live or unlinked record still names for this very version
        (a move put it back there), or that a move in flight is copying this version to (a
        rebalance run again after a crash cut the last one), is never deleted: the bytes
        are referenced again.  The caller holds the key's lock, so no move of this master
        can commit between that check and the delete.  Another master's can, on a shared
        index (a move back to a worker that lost this version's copy earlier): so there the
        record is read again after the deletes, and a copy it names that was deleted is
        reported ``lost``, to be copied back at once, instead of left for a scrub to find.
        """
        blob = blob_id(record.key, record.version)
        found = await self.index.current(record.key)
        keep = set(found[1].replicas) if found and found[1].version == record.version else set()
        keep.update(await self.index.move_in_flight(record))
        unknown = any(i not in self.membership.workers for i in record.replicas)
        if unknown and self.index.shared and time.monotonic() - self._workers_read > REREAD_WORKERS:
            self._workers_read = time.monotonic()
            await self.membership.refresh()  # registered through another master just now?
        # A removed worker is gone with its disk: nothing is left to delete there.
        targets = [
            index
            for index in record.replicas
            if index not in keep and index in self.membership.workers
        ]
        if not all(self.membership.is_up(index) for index in targets):
            return False
        results = await asyncio.gather(
            *(self.transport.delete(index, blob) for index in targets),
            return_exceptions=True,
        )
        if self.index.shared:
            done = [t for t, r in zip(targets, results, strict=True) if r is None]
            await self._recheck(record, done)
        if any(isinstance(result, BaseException) for result in results):
            return False
        if entry is None:
            await self.index.forget_garbage(record)
        else:
            await self.index.forget(entry)
        return True

    async def _recheck(self, record: IndexRecord, deleted: list[int]) -> None:
        """Report the copies of ``record`` on ``deleted`` that the key's record names again
        (a move on another master committed between the check and the deletes); if a move
        to one of them is still in flight, watch for its commit in the background."""
        if self._report(record, deleted, await self.index.current(record.key)):
            return
        moving = set(await self.index.move_in_flight(record)) & set(deleted)
        if moving and len(self._watches) < WATCHES_MAX:
            watch = asyncio.create_task(self._watch_move(record, sorted(moving)))
            self._watches.add(watch)
            watch.add_done_callback(self._watches.discard)

    async def _watch_move(self, record: IndexRecord, deleted: list[int]) -> None:
        """Read the key again every second, for WATCH_MOVE seconds or until the move to
        ``deleted`` is no longer in flight, and report the copies its commit names."""
        deadline = time.monotonic() + WATCH_MOVE
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                if self._report(record, deleted, await self.index.current(record.key)):
                    return
                if not set(await self.index.move_in_flight(record)) & set(deleted):
                    self._report(record, deleted, await self.index.current(record.key))
                    return
        except StoreError as exc:
            log.warning("%r: could not watch a move to deleted copies: %s", record.key, exc)

    def _report(
        self, record: IndexRecord, deleted: list[int], found: tuple[Space, IndexRecord] | None
    ) -> bool:
        """Report each of ``deleted`` that ``found`` (the key's record now) names for
        ``record``'s version as lost; return whether any was."""
        if found is None or found[1].version != record.version:
            return False
        lost = sorted(set(deleted) & set(found[1].replicas))
        for worker in lost:
            log.warning(
                "%r: the copy on worker %d was deleted as another master moved it back; "
                "repairing it",
                record.key,
                worker,
            )
            self.lost(found[1], worker)
        return bool(lost)

    async def recover(self, dead_after: float, at_start: bool = True) -> int:
        """Every write a crash cut off becomes garbage (it was never acknowledged): those of
        other masters sharing the index that have not been heard from for ``dead_after``
        seconds and, ``at_start``, this master's.  Return how many."""
        count = await self.index.pending_to_garbage(dead_after, at_start)
        if count:
            log.info("recovered %d interrupted writes; their copies will be removed", count)
        return count

    async def later(self, record: IndexRecord) -> None:
        """Own the copies of a removed value, whose garbage entry is durable: delete them
        soon, in the background (waiting only while LATER_QUEUE others wait)."""
        await self._later.put(record)

    async def delete_queued(self) -> int:
        """Delete the copies handed to ``later`` and not yet deleted, now; return how many
        values were cleaned.  For tests, which run no background task: a master that stops
        leaves what is queued to its garbage records, which the next pass finds."""
        cleaned = 0
        while not self._later.empty():
            cleaned += await self._delete_later(self._later.get_nowait())
        return cleaned

    async def _delete_later(self, record: IndexRecord) -> bool:
        """Delete a removed value's copies (False: some replica is down; its entry stays
        for a later pass)."""
        async with self.locks.hold(record.key):
            return await self.delete(record)

    async def _drain_later(self) -> None:
        while True:
            record = await self._later.get()
            try:
                await self._delete_later(record)
            except Exception:  # its entry stays: the next pass retries it
                log.exception("deleting the copies of %r failed; will retry", record.key)

    async def reap_forever(self) -> None:
        """Delete garbage from replicas (removed values' copies as soon as they are handed
        over), retrying records whose replicas were unreachable."""
        drains = [asyncio.create_task(self._drain_later()) for _ in range(LATER_WORKERS)]
        try:
            while True:
                try:
                    await self.abandon_again()
                    if self.sweeping():
                        await self.reap_once()
                except Exception:  # the reaper must outlive any one failure
                    log.exception("garbage pass failed; will retry")
                await asyncio.sleep(REAP_INTERVAL)
        finally:
            for drain in drains:
                drain.cancel()

    async def reap_once(self) -> int:
        """Run one pass over the garbage records; return how many were cleaned.

        Versions replaced less than ``replaced_grace`` seconds ago are left for a later
        pass; the copies of failed writes (size -1: never visible, so never read) need no
        grace.
        """
        cleaned = 0
        settled = time.time() * 1000 - self.replaced_grace * 1000
        for entry, record in await self.index.garbage():
            if record.size < 0 or record.modified_ms <= settled:
                async with self.locks.hold(record.key):
                    if await self.index.garbage_entry(entry) == record:  # not rewritten meanwhile
                        cleaned += await self.delete(record, entry)
        return cleaned
