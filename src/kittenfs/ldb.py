"""LevelDB with durable, group-committed writes.

Every write is a synced WriteBatch (``sync=True``): when ``write`` returns, the batch has
been fsynced.  Writes that arrive while a sync is under way are gathered into the next batch,
so many concurrent requests share one fsync.  Reads go straight to plyvel: they are served
from LevelDB's caches in microseconds and need no thread hop.

Where a commit runs depends on how fast the disk syncs.  A commit thread keeps the event
loop serving while a slow fsync (a disk that takes tens of milliseconds) is under way; but
handing a commit to it and back costs two cross-core wake-ups, 110-130 µs of CPU on this
project's 2-core VM, while a commit here takes 0.2-1 ms, during which the CPU is free for
the other processes.  On a CPU-bound small write, committing on the loop saved 9% of the
servers' CPU per PUT and 16% per DELETE (docs/performance.md).  So each commit's duration
is measured, and while their moving average is under INLINE_BELOW the commit runs on the
event loop itself, which waits for it (a stall of that order for the process's other
requests); once commits are slower they go back to the thread.  The first commit runs in
the thread, until there is a measure.  Since nothing can join an inline commit once its
fsync has started, it first lets the loop run a few iterations while writes keep arriving
(``_gather``): the requests already in the sockets join it.

The database is opened with paranoid checks (a damaged log or table is an error, never
silently skipped) and scans verify block checksums.  After each commit the database's
directory is checked to be the one opened (its LOCK file has the same inode): a database
deleted under a running process keeps taking writes into files nobody will find again, so
such a commit fails (StoreLost) instead of being acknowledged.
"""

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import plyvel

Ops = tuple[Mapping[bytes, bytes], Iterable[bytes]]

#: Commits expected to take less than this many seconds run on the event loop (see above).
INLINE_BELOW = 0.002
#: Loop iterations an inline commit waits at most for more writes to join it (_gather).
GATHER_ROUNDS = 6
#: Weight of the latest commit in the moving average of commit durations.
SMOOTHING = 0.2


class StoreLost(OSError):
    """The database's files were deleted or replaced under the running process."""


class SyncedDB:
    """One LevelDB database; the only path by which kittenFS writes to it."""

    def __init__(self, path: str, on_lost: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.on_lost = on_lost  # called (on the event loop) once the database is found lost
        self.db = plyvel.DB(path, create_if_missing=True, paranoid_checks=True)
        self._lock_inode = os.stat(os.path.join(path, "LOCK")).st_ino
        self._queue: list[tuple[Ops, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leveldb-sync")
        #: Moving average of commit durations, seconds (unknown at first: as if slow).
        self.commit_seconds = float("inf")

    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under ``key``, or None."""
        value: bytes | None = self.db.get(key, verify_checksums=True)
        return value

    def scan(self, prefix: bytes, start: bytes = b"", include_value: bool = True) -> Any:
        """Return an iterator over the entries under ``prefix`` whose key is >= ``start``."""
        return self.db.iterator(
            start=max(prefix, start),
            stop=_after_prefix(prefix),
            include_value=include_value,
            verify_checksums=True,
        )

    async def write(
        self, puts: Mapping[bytes, bytes] | None = None, deletes: Iterable[bytes] = ()
    ) -> None:
        """Apply ``puts`` and ``deletes`` atomically and return once they are fsynced."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(((puts or {}, tuple(deletes)), done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self.commit_seconds < INLINE_BELOW:
                    await self._gather()
                batch, self._queue = self._queue, []
                ops = [ops for ops, _ in batch]
                try:
                    if self.commit_seconds < INLINE_BELOW:
                        self._commit(ops)
                    else:
                        await loop.run_in_executor(self._thread, self._commit, ops)
                except StoreLost as exc:
                    if self.on_lost is not None:
                        self.on_lost(str(exc))
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._flushing = None

    async def _gather(self) -> None:
        """Let the writes already on their way join the queue before an inline commit.

        An inline commit blocks the event loop until its fsync returns, so nothing can
        join it once it starts; the requests whose bytes are already in the sockets only
        reach ``write`` a loop iteration or two later.  Committing at once made groups of
        one or two writes under 16 concurrent DELETEs, and half the master's time was spent
        waiting in fsync.  So the loop runs until the queue has not grown for two
        iterations (a request takes two to reach ``write``), GATHER_ROUNDS at most."""
        still = 0
        for _ in range(GATHER_ROUNDS):
            waiting = len(self._queue)
            await asyncio.sleep(0)
            still = still + 1 if len(self._queue) == waiting else 0
            if still == 2:
                return

    def _commit(self, batch: list[Ops]) -> None:
        """Write ``batch`` synced, timing it (on the loop or in the commit thread)."""
        started = time.perf_counter()
        self._write_synced(batch)
        took = time.perf_counter() - started
        last = self.commit_seconds
        self.commit_seconds = took if last == float("inf") else last + SMOOTHING * (took - last)
        self.check_in_place()

    def _write_synced(self, batch: list[Ops]) -> None:
        with self.db.write_batch(sync=True) as wb:
            for puts, deletes in batch:
                for key in deletes:
                    wb.delete(key)
                for key, value in puts.items():
                    wb.put(key, value)

    def check_in_place(self) -> None:
        """Raise StoreLost unless the database's files are still the ones opened."""
        try:
            inode = os.stat(os.path.join(self.path, "LOCK")).st_ino
            present = os.path.exists(os.path.join(self.path, "CURRENT"))
        except OSError:
            inode, present = -1, False
        if inode != self._lock_inode or not present:
            raise StoreLost(
                f"the LevelDB at {self.path} was deleted or replaced while in use; "
                "nothing written since is durable"
            )

    def close_now(self) -> None:
        """Close the database at once (nothing is queued: it was just opened)."""
        self._thread.shutdown(wait=True)
        self.db.close()

    async def close(self) -> None:
        """Wait for queued writes, then close the database."""
        while self._flushing is not None:
            await self._flushing
        self._thread.shutdown(wait=True)
        self.db.close()


def _after_prefix(prefix: bytes) -> bytes | None:
    """Return the smallest key greater than every key that starts with ``prefix``."""
    trimmed = prefix.rstrip(b"\xff")
    return trimmed[:-1] + bytes((trimmed[-1] + 1,)) if trimmed else None
