"""The master's index over LevelDB (``LevelDBIndex``): the only code on the master that
touches LevelDB, and the embedded implementation of the ``Index`` interface (base.py).

Its key spaces are layout.py's; a key's state is the space its record is in.  Every change is
one synced batch, so a crash leaves each key either as it was or as it became, and a ``p:``
record found at start is a write (or a move's copies) that never committed: it becomes
garbage.
"""

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator

from ...credentials import Credential
from ...ldb import SyncedDB
from ...records import IndexRecord, WorkerInfo, decode, encode
from .base import HELD, Entry, EntryId, Kind, NoLongerPending, Raced, Space, expect
from .layout import (
    MOVE,
    NEXT_WORKER,
    SETTING,
    blob_key,
    credential_key,
    draining_key,
    key_of,
    move_key,
    replica_garbage,
    worker_key,
)

#: Records a whole-index scan (``all_current``) reads between two turns of the event loop.
SCAN_BATCH = 2000


class LevelDBIndex:
    """The Index (base.py) in one LevelDB: reads are direct (they never suspend, though
    callers may not rely on that), commits are synced batches with group commit."""

    #: Other masters may use the same index at once.
    shared = False

    def __init__(self, path: str, owner: str = "") -> None:
        self.db = SyncedDB(path)
        #: The master using this index (the only one: LevelDB is locked by its process).
        self.owner = owner
        self._url = ""

    async def get(self, space: Space, key: str) -> IndexRecord | None:
        """Return the record of ``key`` in a key-named space (LIVE or UNLINKED), or None."""
        raw = self.db.get(key_of(space, key))
        return None if raw is None else decode(IndexRecord, raw)

    async def current(self, key: str) -> tuple[Space, IndexRecord] | None:
        """Return the key's live or unlinked record, with its space, or None."""
        for space in HELD:
            record = await self.get(space, key)
            if record is not None:
                return space, record
        return None

    async def all_current(self) -> AsyncIterator[tuple[Space, IndexRecord]]:
        """Yield every live, then every unlinked, record with its space, letting the event
        loop run every SCAN_BATCH records: a scan of 600k keys in one go once held the master
        long enough for its workers to be marked down."""
        n = 0
        for space in HELD:
            async for record in self.records(space):
                n += 1
                if n % SCAN_BATCH == 0:
                    await asyncio.sleep(0)
                yield space, record

    def _expect(self, key: str, expected: IndexRecord | None, space: Space | None = None) -> None:
        """Raise Raced unless ``key``'s record is still ``expected`` (base.expect).  Read and
        commit queue with no suspension between them."""
        found = None
        for held in HELD:
            raw = self.db.get(key_of(held, key))
            if raw is not None:
                found = (held, decode(IndexRecord, raw))
                break
        expect(key, found, expected, space)

    async def begin_write(self, pending: IndexRecord) -> None:
        """Record a write as in flight before any replica receives a byte."""
        await self.db.write({blob_key(Space.PENDING, pending): encode(pending)})

    async def commit_write(self, record: IndexRecord, replaced: list[IndexRecord]) -> None:
        """Make ``record`` the key's live value; the versions it replaces become garbage
        (Raced if ``replaced`` is not the key's record, or the write is not pending)."""
        self._expect(record.key, replaced[0] if replaced else None)
        if self.db.get(blob_key(Space.PENDING, record)) is None:
            raise NoLongerPending(f"the write of {record.key!r} is no longer pending")
        puts = {key_of(Space.LIVE, record.key): encode(record)}
        puts.update({blob_key(Space.GARBAGE, old): encode(old) for old in replaced})
        deletes = [blob_key(Space.PENDING, record), key_of(Space.UNLINKED, record.key)]
        await self.db.write(puts, deletes)

    async def commit_move(
        self, space: Space, record: IndexRecord, moved: IndexRecord, dropped: tuple[int, ...]
    ) -> None:
        """Switch a key's record (live or unlinked) to ``moved``, the same version on other
        replicas: the move's pending record goes, and each dropped replica gets its own
        garbage entry, stamped now so the reaper gives reads already sent there their grace.
        Raced if the key's record is no longer ``record``, or the move is not pending."""
        self._expect(record.key, record, space)
        if self.db.get(move_key(record)) is None:
            raise NoLongerPending(f"the move of {record.key!r} is no longer pending")
        puts = {key_of(space, record.key): encode(moved)}
        puts.update(replica_garbage(record, dropped, int(time.time() * 1000)))
        await self.db.write(puts, [move_key(record)])

    async def begin_move(self, move: IndexRecord) -> None:
        """Record a move's copies (``move.replicas``) as in flight before any is made.  A move
        has its own pending key, so it never meets the version's own write records."""
        if self.db.get(move_key(move)) is not None:
            raise Raced(f"a move of {move.key!r} is in flight already")
        await self.db.write({move_key(move): encode(move)})

    async def move_in_flight(self, record: IndexRecord) -> tuple[int, ...]:
        """Return the workers that a move in flight is copying ``record``'s version to."""
        raw = self.db.get(move_key(record))
        return () if raw is None else decode(IndexRecord, raw).replicas

    async def abandon_move(self, move: IndexRecord) -> list[tuple[EntryId, IndexRecord]]:
        """Turn a failed move's copies into one garbage entry each; return the entries."""
        entries = replica_garbage(move, move.replicas, 0)
        await self.db.write(entries, [move_key(move)])
        return [(key, decode(IndexRecord, raw)) for key, raw in entries.items()]

    async def garbage_entry(self, entry: EntryId) -> IndexRecord | None:
        """Return the garbage entry stored under ``entry`` now, or None."""
        raw = self.db.get(entry)
        return None if raw is None else decode(IndexRecord, raw)

    async def update(self, space: Space, record: IndexRecord, updated: IndexRecord) -> None:
        """Replace a key's record ``record`` in ``space`` with ``updated``."""
        self._expect(record.key, record, space)
        await self.db.write({key_of(space, record.key): encode(updated)})

    async def owned(self, blob: str) -> bool:
        """Return True if a pending record or a garbage entry exists for ``blob``: the write
        path or the reaper is responsible for its copies."""
        for space in (b"p:", b"d:"):  # p:<blob>, p:<blob>@move, d:<blob>, d:<blob>@<worker>
            with self.db.scan(space + blob.encode("ascii"), include_value=False) as entries:
                if next(iter(entries), None) is not None:
                    return True
        return False

    async def garbage(self) -> list[tuple[EntryId, IndexRecord]]:
        """Return every garbage entry as (its own key, its record)."""
        return [(raw_key, decode(IndexRecord, raw)) for raw_key, raw in self.db.scan(b"d:")]

    async def forget(self, raw_key: EntryId) -> None:
        """Drop one garbage entry, by its own key, once its replicas have been cleaned."""
        await self.db.write(deletes=[raw_key])

    async def abandon_write(self, pending: IndexRecord) -> None:
        """Turn a failed write's pending record into garbage, for replicas not yet cleaned."""
        await self.db.write(
            {blob_key(Space.GARBAGE, pending): encode(pending)},
            [blob_key(Space.PENDING, pending)],
        )

    async def unlink(self, record: IndexRecord) -> None:
        """Hide a live value from reads and listing, keeping its bytes."""
        self._expect(record.key, record, Space.LIVE)
        await self.db.write(
            {key_of(Space.UNLINKED, record.key): encode(record)}, [key_of(Space.LIVE, record.key)]
        )

    async def remove(self, record: IndexRecord) -> None:
        """Remove a live or unlinked value from the index; its replicas become garbage."""
        self._expect(record.key, record)
        await self.db.write(
            {blob_key(Space.GARBAGE, record): encode(record)},
            [key_of(Space.LIVE, record.key), key_of(Space.UNLINKED, record.key)],
        )

    async def forget_garbage(self, record: IndexRecord) -> None:
        """Drop a garbage record whose replicas have all been cleaned."""
        await self.db.write(deletes=[blob_key(Space.GARBAGE, record)])

    async def pending_to_garbage(self, dead_after: float, at_start: bool = True) -> int:
        """At start, turn every write and move that was in flight at a crash into garbage
        (every one: no other master uses this index); later, none."""
        if not at_start:
            return 0
        pending = [(raw_key, decode(IndexRecord, raw)) for raw_key, raw in self.db.scan(b"p:")]
        for raw_key, record in pending:
            if raw_key.endswith(MOVE):
                await self.abandon_move(record)
            else:
                await self.abandon_write(record)
        return len(pending)

    async def records(
        self, space: Space, prefix: str = "", start: str = ""
    ) -> AsyncIterator[IndexRecord]:
        """Yield the records of a space in key order, from ``start`` on, under ``prefix``."""
        low = key_of(space, start)
        for _, raw in self.db.scan(key_of(space, prefix), low):
            yield decode(IndexRecord, raw)

    async def keys(
        self, space: Space, prefix: str, start: str, limit: int
    ) -> tuple[list[str], str]:
        """Return up to ``limit`` keys of a space under ``prefix`` from ``start`` on, and the next.

        ``next`` is the first key of the following page, or "" on the last page.
        """
        strip = len(space.value)
        found: list[str] = []
        low = key_of(space, start)
        with self.db.scan(key_of(space, prefix), low, include_value=False) as iterator:
            for raw in iterator:
                found.append(raw[strip:].decode("utf-8"))
                if len(found) > limit:
                    return found[:limit], found[limit]
        return found, ""

    async def workers(self) -> list[WorkerInfo]:
        """Return every registered worker, by index."""
        return [decode(WorkerInfo, raw) for _, raw in self.db.scan(b"w:")]

    async def save_worker(self, info: WorkerInfo) -> None:
        """Persist a worker's registration, and that its index is never to be given again;
        Raced if the index is another worker's."""
        held = self.db.get(worker_key(info.index))
        if held is not None and decode(WorkerInfo, held).id != info.id:
            raise Raced(f"worker index {info.index} belongs to another worker")
        await self.db.write(
            {
                worker_key(info.index): encode(info),
                NEXT_WORKER: b"%d" % max(await self.next_worker(), info.index + 1),
            }
        )

    async def next_worker(self) -> int:
        """Return the lowest index never given to a worker (removed ones included)."""
        raw = self.db.get(NEXT_WORKER)
        return int(raw) if raw else max((w.index + 1 for w in await self.workers()), default=0)

    async def load(
        self, records: list[IndexRecord], workers: list[WorkerInfo], cluster: str | None
    ) -> None:
        """Write a rebuilt index's live records, workers and cluster id, in synced batches."""
        if cluster is not None:
            await self.cluster_id(cluster)
        for info in workers:
            await self.save_worker(info)
        for start in range(0, len(records), 1000):
            await self.db.write(
                {key_of(Space.LIVE, r.key): encode(r) for r in records[start : start + 1000]}
            )

    async def draining(self) -> set[int]:
        """Return the indices of the workers being drained."""
        return {int(raw_key[2:]) for raw_key in self.db.scan(b"x:", include_value=False)}

    async def set_draining(self, index: int, draining: bool) -> None:
        """Mark a worker as being drained (or not), durably."""
        if draining:
            await self.db.write({draining_key(index): b"draining"})
        else:
            await self.db.write(deletes=[draining_key(index)])

    async def remove_worker(self, index: int) -> None:
        """Forget a worker: its registration and its drain mark."""
        await self.db.write(deletes=[worker_key(index), draining_key(index)])

    async def credential(self, access_key: str) -> Credential | None:
        """Return the credential with this access key, or None."""
        raw = self.db.get(credential_key(access_key))
        return None if raw is None else decode(Credential, raw)

    async def credentials(self) -> list[Credential]:
        """Return every credential, by access key."""
        return [decode(Credential, raw) for _, raw in self.db.scan(b"a:")]

    async def save_credential(self, credential: Credential) -> None:
        """Store a credential, durably."""
        await self.db.write({credential_key(credential.access_key): encode(credential)})

    async def delete_credential(self, access_key: str) -> bool:
        """Revoke a credential; return whether it existed."""
        if await self.credential(access_key) is None:
            return False
        await self.db.write(deletes=[credential_key(access_key)])
        return True

    async def cluster_id(self, new_id: str) -> str:
        """Return the id of this master's cluster, storing ``new_id`` the first time: workers
        bind to it and refuse any other cluster's master (a rebuilt index keeps it)."""
        return await self._setting(b"c:cluster", new_id)

    async def key_check(self, new_check: str) -> str:
        """Return the check value of the master key, storing ``new_check`` the first time."""
        return await self._setting(b"c:key_check", new_check)

    async def setting(self, name: str) -> str | None:
        """Return the setting ``name``, or None."""
        stored = self.db.get(SETTING + name.encode("ascii"))
        return None if stored is None else stored.decode("utf-8")

    async def put_setting(self, name: str, value: str | None) -> None:
        """Store the setting ``name`` (None: drop it), durably."""
        key = SETTING + name.encode("ascii")
        if value is None:
            await self.db.write(deletes=[key])
        else:
            await self.db.write({key: value.encode("utf-8")})

    async def _setting(self, name: bytes, first: str) -> str:
        stored = self.db.get(name)
        if stored is not None:
            return stored.decode("ascii")
        await self.db.write({name: first.encode("ascii")})
        return first

    async def beat(self, url: str) -> None:
        """Remember where this master is reachable (no other master reads it)."""
        self._url = url

    async def masters(self, within: float) -> list[tuple[str, str]]:
        """Return this master: the only one."""
        return [(self.owner, self._url)]

    async def lease(self, name: str, seconds: float) -> str:
        """Return this master: the only one, so it holds every lease."""
        return self.owner

    async def masters_attached(self) -> int:
        """Return 0: LevelDB's lock keeps every other process out while this one has it."""
        return 0

    async def export(self) -> AsyncGenerator[Entry, None]:
        """Yield every entry, ordered by its key (an iterator reads one snapshot)."""
        kinds = {kind.value.encode("ascii"): kind for kind in Kind}
        with self.db.scan(b"") as entries:
            for n, (raw_key, raw) in enumerate(entries, 1):
                yield Entry(kinds[raw_key[:1]], raw_key[2:].decode("utf-8"), raw)
                if n % SCAN_BATCH == 0:
                    await asyncio.sleep(0)

    async def import_entries(self, entries: list[Entry]) -> None:
        """Write ``entries`` in one synced batch."""
        await self.db.write(
            {e.kind.value.encode("ascii") + b":" + e.name.encode("utf-8"): e.value for e in entries}
        )

    async def close(self) -> None:
        """Close the database after queued writes."""
        await self.db.close()
