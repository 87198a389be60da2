"""Fakes for the master's unit tests: an in-memory replica transport, and a master's core
(index in a tmp dir, membership, transport, locks, cache, reaper, write path, mover)."""

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kittenfs.errors import ReplicaError
from kittenfs.locks import KeyLocks
from kittenfs.master.cache import ValueCache
from kittenfs.master.garbage import Reaper
from kittenfs.master.index import LevelDBIndex
from kittenfs.master.membership import Membership
from kittenfs.master.move import Mover
from kittenfs.master.write_path import Store
from kittenfs.placement import blob_id
from kittenfs.records import BlobListing, CopyState, IndexRecord, Meta, split_meta_frame

T = TypeVar("T")

#: Generous bound on any one test's coroutine: a hang fails instead of blocking the suite.
LIMIT = 30.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh event loop, failing it after LIMIT seconds."""
    return asyncio.run(asyncio.wait_for(coro, LIMIT))


@dataclass
class Blob:
    """One blob held by a fake worker."""

    key: str
    version: str
    value: bytes
    meta: Meta = ()

    @property
    def md5(self) -> str:
        return hashlib.md5(self.value, usedforsecurity=False).hexdigest()


@dataclass
class FakeTransport:
    """Workers as dictionaries of blobs.  ``fail[(op, worker)]`` makes that operation fail
    on that worker (``op``: upload, put_small, delete, copy_state, copy, read), with a
    ReplicaError (``unreachable`` if the worker is in ``unreachable``).  A ``read`` of a blob
    the worker lacks fails with status 404; ``cut[worker] = n`` makes its reads stop after
    ``n`` bytes of the blob (as a worker cuts a stream at a bad block); reads give
    ``chunk`` bytes at a time."""

    blobs: dict[int, dict[str, Blob]] = field(default_factory=dict)
    fail: set[tuple[str, int]] = field(default_factory=set)
    unreachable: set[int] = field(default_factory=set)
    calls: list[tuple[str, int, str]] = field(default_factory=list)
    cut: dict[int, int] = field(default_factory=dict)
    chunk: int = 4

    def held(self, worker: int) -> dict[str, Blob]:
        return self.blobs.setdefault(worker, {})

    def holders(self, record: IndexRecord) -> set[int]:
        """Return the workers that hold ``record``'s version."""
        blob = blob_id(record.key, record.version)
        return {worker for worker, held in self.blobs.items() if blob in held}

    def all_blobs(self) -> set[tuple[int, str]]:
        return {(worker, blob) for worker, held in self.blobs.items() for blob in held}

    def _check(self, op: str, worker: int, blob: str) -> None:
        self.calls.append((op, worker, blob))
        if (op, worker) in self.fail:
            raise ReplicaError(f"worker {worker}: {op} failed", worker in self.unreachable)

    async def upload(
        self,
        worker: int,
        blob: str,
        key: str,
        version: str,
        body: AsyncIterator[bytes],
        size: int | None,
        meta_follows: bool = False,
    ) -> tuple[int, str]:
        value = b"".join([chunk async for chunk in body])
        meta: Meta = ()
        self._check("upload", worker, blob)
        if meta_follows:  # as a worker splits it (worker/handlers.Trailer)
            value, meta = split_meta_frame(value)
        stored = self.held(worker)[blob] = Blob(key, version, value, meta)
        return len(value), stored.md5

    async def put_small(
        self, worker: int, blob: str, key: str, version: str, value: bytes, meta: Meta = ()
    ) -> tuple[int, str]:
        await asyncio.sleep(0)
        self._check("put_small", worker, blob)
        stored = self.held(worker)[blob] = Blob(key, version, value, meta)
        return len(value), stored.md5

    @contextlib.asynccontextmanager
    async def read(
        self, worker: int, blob: str, first: int = 0, last: int | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        await asyncio.sleep(0)
        self._check("read", worker, blob)
        held = self.held(worker).get(blob)
        if held is None:
            raise ReplicaError(f"worker {worker}: 404", status=404)
        end = len(held.value) if last is None else last + 1
        yield self._stream(worker, held.value, first, end)

    async def _stream(
        self, worker: int, value: bytes, first: int, end: int
    ) -> AsyncIterator[bytes]:
        stop = min(end, self.cut.get(worker, end))
        for start in range(first, stop, self.chunk):
            await asyncio.sleep(0)
            yield value[start : min(start + self.chunk, stop)]
        if stop < end:
            raise ReplicaError(f"worker {worker}: cut at byte {stop}")

    async def delete(self, worker: int, blob: str) -> None:
        await asyncio.sleep(0)
        self._check("delete", worker, blob)
        self.held(worker).pop(blob, None)

    async def copy_state(self, worker: int, blob: str, md5: str, deep: bool) -> CopyState:
        await asyncio.sleep(0)
        self._check("copy_state", worker, blob)
        held = self.held(worker).get(blob)
        if held is None:
            return CopyState.MISSING
        return CopyState.GOOD if held.md5 == md5 else CopyState.CORRUPT

    async def list_blobs(self, worker: int, page: int = 1000) -> AsyncIterator[BlobListing]:
        for blob, held in sorted(self.held(worker).items()):
            yield BlobListing(
                blob, held.key, held.version, len(held.value), held.md5, True, 0, held.meta
            )

    async def copy(self, record: IndexRecord, source: int, dest: int) -> tuple[int, str]:
        blob = blob_id(record.key, record.version)
        self._check("copy", dest, blob)
        held = self.held(source).get(blob)
        if held is None:
            raise ReplicaError(f"worker {source} answered 404")
        self.held(dest)[blob] = Blob(held.key, held.version, held.value, record.meta)
        return len(held.value), held.md5

    async def close(self) -> None:
        pass


@dataclass
class Core:
    """A master's core over a real LevelDB index and the fake transport."""

    index: LevelDBIndex
    membership: Membership
    transport: FakeTransport
    cache: ValueCache
    reaper: Reaper
    store: Store
    mover: Mover


async def open_core(
    path: Path,
    workers: int = 3,
    replicas: int = 3,
    cache_bytes: int = 1 << 20,
    max_value_bytes: int = 1 << 24,
) -> Core:
    """Return a core with ``workers`` registered workers (all up) and no grace for garbage."""
    index = LevelDBIndex(str(path / "index"))
    membership = await Membership.open(index, replicas, down_after=60.0)
    for i in range(workers):
        await membership.register(f"w-{i:012x}", f"http://127.0.0.1:{4000 + i}", None)
    transport = FakeTransport()
    locks = KeyLocks()
    cache = ValueCache(cache_bytes, 64 * 1024)
    reaper = Reaper(index, membership, transport, locks, replaced_grace=0.0)
    store = Store(index, membership, transport, locks, cache, reaper, max_value_bytes, 5.0)
    mover = Mover(index, membership, transport, locks, cache, reaper)
    return Core(index, membership, transport, cache, reaper, store, mover)


async def chunks(value: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    """Yield ``value`` in pieces, as a request body arrives."""
    for start in range(0, len(value), size):
        yield value[start : start + size]
    if not value:
        return
