"""Damaged replicas: copies known to be missing or corrupt, until repair replaces them.

A worker reports a corrupt blob it found (its scrub, or a read that failed a block check);
a client sent back by a worker that could not serve a blob names that worker, and a quick
check of its copy tells whether it is missing.  Until the repair queue has converged the key,
reads avoid the damaged replicas and ``/_cluster?keys=1`` counts the key as under-replicated.

Kept in memory, bounded: after a restart the scrub, the reads and repair find them again.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..records import CopyState, IndexRecord

log = logging.getLogger("kittenfs.master")

#: Most keys with damaged replicas remembered at once (the oldest are forgotten first).
MAX_KEYS = 100_000
#: Most checks of a replica that a failed read asked for, running at once.
MAX_CHECKS = 64

#: Returns the state of a worker's copy of a record (a HEAD).
CheckCopy = Callable[[int, IndexRecord], Awaitable[CopyState]]


class Damage:
    """Which replicas of which keys' current versions are damaged."""

    def __init__(self, copy_state: CheckCopy, repair: Callable[[list[str]], None]) -> None:
        self._copy_state = copy_state
        self._repair = repair
        self._bad: dict[str, tuple[str, set[int]]] = {}  # key -> (version, workers)
        self._checking: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def mark(self, record: IndexRecord, worker: int) -> None:
        """Note that ``worker``'s copy of ``record`` is damaged, and queue the key's repair."""
        version, workers = self._bad.get(record.key, (record.version, set()))
        if version != record.version:
            workers = set()
        if worker not in workers:
            log.warning("worker %d holds a damaged copy of %r; repairing", worker, record.key)
        self._bad.pop(record.key, None)
        self._bad[record.key] = (record.version, workers | {worker})
        while len(self._bad) > MAX_KEYS:
            del self._bad[next(iter(self._bad))]
        self._repair([record.key])

    def of(self, record: IndexRecord) -> set[int]:
        """Return the damaged replicas of ``record`` (its version's)."""
        entry = self._bad.get(record.key)
        return entry[1] if entry is not None and entry[0] == record.version else set()

    def repaired(self, key: str) -> None:
        """Forget ``key``'s damage: repair has converged it."""
        self._bad.pop(key, None)

    def suspect(self, record: IndexRecord, workers: tuple[int, ...]) -> None:
        """Check, in the background, the copies of ``record`` on ``workers`` (which failed to
        serve a read); mark those found missing or corrupt."""
        for worker in workers:
            job = (record.key, worker)
            if (
                worker not in record.replicas
                or worker in self.of(record)
                or job in self._checking
                or len(self._checking) >= MAX_CHECKS
            ):
                continue
            self._checking.add(job)
            task = asyncio.create_task(self._check(record, worker))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _check(self, record: IndexRecord, worker: int) -> None:
        try:
            if await self._copy_state(worker, record) is not CopyState.GOOD:
                self.mark(record, worker)
        except Exception as exc:
            log.info("could not check worker %d's copy of %r: %s", worker, record.key, exc)
        finally:
            self._checking.discard((record.key, worker))

    def count(self) -> int:
        """Return how many keys have damaged replicas."""
        return len(self._bad)

    async def close(self) -> None:
        """Stop the checks under way."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
