"""The write path: PUT, DELETE, UNLINK and clear, ordered so a crash never shows half a write.

PUT, for one key at a time (writes to a key are serialized by a per-key lock):

1. choose replicas: the first R workers in the key's rendezvous order that are up;
2. record the write as pending (synced), naming a fresh version of the key;
3. stream the body once, to every replica in parallel; each makes it durable and answers
   with its size and MD5, which must equal what the master counted.  A value with metadata
   (the S3 API's) carries it to the replicas too, after its bytes (the checksums among it
   are known only then), so ``kittenfs rebuild`` can restore it;
4. commit: one synced batch makes the new version live and turns the version it replaces
   into garbage; only then is the client answered;
5. garbage is deleted from the replicas in the background (garbage.py), and retried until it
   is gone; a replaced version is kept a grace period first, for reads redirected to it.

If any replica fails, the write fails (ReplicaUnavailable) and its copies become garbage: nothing is
visible.  A pending record found at start is a write cut off by a crash; it becomes garbage.
"""

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..errors import (
    InvalidRequest,
    MetadataTooLarge,
    NotFound,
    PreconditionFailed,
    ReplicaError,
    ReplicaUnavailable,
    StateConflict,
    StoreError,
    TooLarge,
    WriteAbandoned,
)
from ..httputil import etag_matches
from ..locks import KeyLocks
from ..placement import blob_id, new_version
from ..records import IndexRecord, Meta, MetaTooLarge, meta_block, meta_frame
from .cache import ValueCache
from .fanout import FanOut, Stalled
from .garbage import Reaper
from .index import HELD, Index, NoLongerPending, Raced, Space
from .membership import Membership
from .transport import ReplicaTransport

log = logging.getLogger("kittenfs.master")

T = TypeVar("T")

#: Values up to this many bytes, with a Content-Length, are read whole and sent to the
#: replicas through the batcher (larger ones stream, one request per replica).
BATCHED_VALUE_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a PUT did: whether it created the key, and the record now live."""

    created: bool
    record: IndexRecord


class Store:
    """The master's writes of keys: PUT, DELETE, UNLINK, clear and purging unlinked keys."""

    def __init__(
        self,
        index: Index,
        membership: Membership,
        transport: ReplicaTransport,
        locks: KeyLocks,
        cache: ValueCache,
        reaper: Reaper,
        max_value_bytes: int,
        replica_timeout: float = 30.0,
    ) -> None:
        self.index = index
        self.membership = membership
        self.transport = transport
        self.locks = locks
        self.cache = cache
        self.reaper = reaper
        self.max_value_bytes = max_value_bytes
        self.replica_timeout = replica_timeout

    async def put(
        self,
        key: str,
        body: AsyncIterator[bytes],
        size: int | None,
        if_none_match: str | None = None,
        meta: Meta = (),
        finish: Callable[[int, str], Meta] | None = None,
        precondition: Callable[[IndexRecord | None], None] | None = None,
    ) -> PutResult:
        """Store ``body`` as the value of ``key`` on every replica, then make it live.

        Raise PreconditionFailed if ``if_none_match`` (an If-None-Match header) matches the
        live value's ETag (``*``: the key exists), TooLarge if the body is over the limit,
        InvalidRequest if it is shorter than ``size``, ReplicaUnavailable if too few workers
        are up or a replica fails.  ``meta`` is stored in the record (IndexRecord.meta) and
        with every replica (MetadataTooLarge if it is over records.MAX_META_BYTES).
        ``finish`` gets the size and MD5 of the body once it has ended, before the replicas
        are told so, and returns more metadata to store (a checksum of the body); whatever
        it raises fails the write, which leaves nothing visible (the S3 API checks
        Content-MD5 and the SDKs' checksums there).  ``precondition`` gets the live record
        (None if there is none) under the key's lock, before anything is written; whatever
        it raises fails the write (the S3 API's If-Match and If-None-Match).
        """
        if size is not None and size > self.max_value_bytes:
            raise TooLarge(self.max_value_bytes)
        _check_meta(meta)
        small = size is not None and size <= BATCHED_VALUE_MAX
        value = await _read_whole(body, size) if small and size is not None else None
        async with self.locks.hold(key):
            if if_none_match is not None or precondition is not None:  # fail before uploading
                _check(key, await self.index.get(Space.LIVE, key), if_none_match, precondition)
            now = int(time.time() * 1000)
            pending = IndexRecord(
                key, new_version(), -1, "", tuple(self.membership.choose_replicas(key)), now, now
            )
            await self.index.begin_write(pending)
            try:
                if value is not None:
                    md5 = hashlib.md5(value, usedforsecurity=False).hexdigest()
                    meta = _finished(meta, finish, len(value), md5)
                    written_size, md5 = await self._replicate_small(pending, value, md5, meta)
                else:
                    written_size, md5, meta = await self._replicate(
                        pending, body, size, meta, finish
                    )
            except BaseException:
                await asyncio.shield(self.reaper.abandon(pending))
                raise
            record = IndexRecord(
                key, pending.version, written_size, md5, pending.replicas, now, now, meta
            )
            # Once started, the commit lands even if the client goes away, and the key stays
            # locked until it has.
            try:
                record, live = await to_completion(
                    self._commit(record, if_none_match, precondition)
                )
            except Exception:
                await asyncio.shield(self.reaper.abandon(pending))  # the commit did not land
                raise
            finally:
                self.cache.invalidate(key)
            if value is not None:  # written through: a value just written is likely read soon
                self.cache.put(record, value)
        return PutResult(live is None, record)

    async def _commit(
        self,
        record: IndexRecord,
        if_none_match: str | None,
        precondition: Callable[[IndexRecord | None], None] | None,
    ) -> tuple[IndexRecord, IndexRecord | None]:
        """Make ``record`` live over the key's current record, read again (and the
        preconditions checked again) each time another master committed the key meanwhile;
        return the committed record and the live one it replaced.  Raise WriteAbandoned if
        the write was turned into garbage under it."""

        async def attempt() -> tuple[IndexRecord, IndexRecord | None]:
            found = await self.index.current(record.key)
            live = found[1] if found and found[0] is Space.LIVE else None
            _check(record.key, live, if_none_match, precondition)
            now = record.modified_ms
            made = dataclasses.replace(record, created_ms=live.created_ms if live else now)
            # Garbage is stamped with the time it was replaced: the reaper waits out the grace.
            replaced = [dataclasses.replace(found[1], modified_ms=now)] if found else []
            await self.index.commit_write(made, replaced)
            return made, live

        try:
            return await settled(record.key, attempt)
        except NoLongerPending as exc:
            raise WriteAbandoned(str(exc)) from None

    async def _replicate(
        self,
        pending: IndexRecord,
        body: AsyncIterator[bytes],
        size: int | None,
        meta: Meta,
        finish: Callable[[int, str], Meta] | None,
    ) -> tuple[int, str, Meta]:
        """Copy ``body`` to the pending write's replicas, then (if there may be any) its
        metadata, ``finish``'s included; return the size and MD5 they hold, and the
        metadata."""
        trailing = bool(meta) or finish is not None
        fan = FanOut(len(pending.replicas), self.replica_timeout)
        blob = blob_id(pending.key, pending.version)
        uploads = [
            asyncio.create_task(
                self.transport.upload(
                    index,
                    blob,
                    pending.key,
                    pending.version,
                    aiter(branch),
                    size,
                    trailing,
                )
            )
            for index, branch in zip(pending.replicas, fan.branches, strict=False)
        ]
        for task, branch in zip(uploads, fan.branches, strict=False):
            task.add_done_callback(branch.on_consumer_done)
        digest = hashlib.md5(usedforsecurity=False)
        total = 0
        try:
            async for chunk in body:
                total += len(chunk)
                if total > self.max_value_bytes:
                    raise TooLarge(self.max_value_bytes)
                digest.update(chunk)
                await fan.send(chunk)
                if any(_failed(task) for task in uploads):
                    # A replica gave up: the write fails.  Its branch is stopped now (its
                    # done-callback may not have run yet) so only the others count as aborted.
                    # (A replica that finished early with every byte is fine: checked below.)
                    for task, branch in zip(uploads, fan.branches, strict=False):
                        if task.done():
                            branch.stop()
                    fan.abort()
                    break
            else:
                if trailing:  # the metadata ends the body, once the body has been counted
                    _check_length(size, total)
                    meta = _finished(meta, finish, total, digest.hexdigest())
                    await fan.send(meta_frame(meta))
                await fan.close()
        except BaseException as exc:
            fan.abort()
            await _finish(uploads, self.replica_timeout)
            if isinstance(exc, Stalled):
                raise ReplicaUnavailable(str(exc), "replica_stalled") from None
            raise
        results = await self._await_uploads(uploads, pending.replicas)
        self._suspect_unreachable(pending.replicas, results, [b.aborted for b in fan.branches])
        if any(isinstance(result, BaseException) for result in results):
            fan.abort()
        if not _failures(results):
            _check_length(size, total)
        return (*_agreed(pending.replicas, results, (total, digest.hexdigest())), meta)

    async def _replicate_small(
        self, pending: IndexRecord, value: bytes, md5: str, meta: Meta
    ) -> tuple[int, str]:
        """Copy a small value (whose MD5 is ``md5``) and its metadata to the replicas
        through the batcher; return its size and MD5."""
        blob = blob_id(pending.key, pending.version)
        puts = [
            asyncio.create_task(
                self.transport.put_small(index, blob, pending.key, pending.version, value, meta)
            )
            for index in pending.replicas
        ]
        results = await self._await_uploads(puts, pending.replicas)
        self._suspect_unreachable(pending.replicas, results, [False] * len(results))
        return _agreed(pending.replicas, results, (len(value), md5))

    async def _await_uploads(
        self, uploads: list[asyncio.Task[tuple[int, str]]], replicas: tuple[int, ...]
    ) -> list[object]:
        """Wait for every upload to answer; cancel those whose worker went down meanwhile.

        A worker that stops heartbeating (dead, paused, cut off) cannot be waited for: its
        upload may be stuck sending the last bytes, where no socket timeout applies.
        """
        pending: set[asyncio.Task[tuple[int, str]]] = set(uploads)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=1.0)
            for index, task in zip(replicas, uploads, strict=False):
                if task in pending and not self.membership.is_up(index):
                    task.cancel()
        results: list[object] = list(await asyncio.gather(*uploads, return_exceptions=True))
        for i, (index, result) in enumerate(zip(replicas, results, strict=False)):
            if isinstance(result, asyncio.CancelledError):
                results[i] = ReplicaError(f"worker {index} stopped answering")
        return results

    def _suspect_unreachable(
        self, replicas: tuple[int, ...], results: Sequence[object], aborted: Sequence[bool]
    ) -> None:
        """Mark down the workers whose upload failed on its own for want of a connection
        (not because the master ``aborted`` it)."""
        for index, result, cut in zip(replicas, results, aborted, strict=False):
            if isinstance(result, ReplicaError) and result.unreachable and not cut:
                self.membership.suspect(index, str(result))

    async def delete(self, key: str) -> None:
        """Remove ``key`` (live or unlinked) from the index; its copies go in the background.

        Done once the removal (and the garbage entry naming the copies) is durable in the
        index: the reaper owns the copies from then on (garbage.py).  Raise NotFound if the
        key is absent.
        """

        async def attempt() -> IndexRecord:
            found = await self.index.current(key)
            if found is None:
                raise NotFound(f"no key {key!r}")
            await self.index.remove(found[1])
            return found[1]

        async with self.locks.hold(key):
            record = await settled(key, attempt)
            self.cache.invalidate(key)
        await self.reaper.later(record)

    async def purge_unlinked(self, key: str) -> None:
        """Delete ``key`` if it is unlinked (not if it was written again meanwhile)."""
        async with self.locks.hold(key):
            found = await self.index.current(key)
            if found is None or found[0] is not Space.UNLINKED:
                return
            try:
                await self.index.remove(found[1])
            except Raced:
                return  # written again meanwhile, by another master
        await self.reaper.later(found[1])

    async def unlink(self, key: str) -> None:
        """Hide ``key`` from reads and listing, keeping its bytes; NotFound if it is not live."""

        async def attempt() -> None:
            record = await self.index.get(Space.LIVE, key)
            if record is None:
                raise NotFound(f"no live key {key!r}")
            await self.index.unlink(record)

        async with self.locks.hold(key):
            await settled(key, attempt)
            self.cache.invalidate(key)

    async def clear(self) -> int:
        """Delete every key, live or unlinked; return how many were deleted."""
        deleted = 0
        for space in HELD:
            start = ""
            while True:
                keys, start = await self.index.keys(space, "", start, 1000)
                for key in keys:
                    try:
                        await self.delete(key)
                        deleted += 1
                    except StoreError:
                        pass  # deleted meanwhile by someone else
                if not start:
                    break
        return deleted


def _check_meta(meta: Meta) -> None:
    """Raise MetadataTooLarge if ``meta`` is more than a blob can carry."""
    try:
        meta_block(meta)
    except MetaTooLarge as exc:
        raise MetadataTooLarge(str(exc)) from None


def _finished(meta: Meta, finish: Callable[[int, str], Meta] | None, size: int, md5: str) -> Meta:
    """Return ``meta`` and what ``finish`` adds for a body of ``size`` bytes and ``md5``."""
    if finish is None:
        return meta
    meta = (*meta, *finish(size, md5))
    _check_meta(meta)
    return meta


async def _read_whole(body: AsyncIterator[bytes], size: int) -> bytes:
    """Return a small body whole; raise InvalidRequest if it ends before its Content-Length."""
    value = b"".join([chunk async for chunk in body])
    _check_length(size, len(value))
    return value


def _check_length(size: int | None, got: int) -> None:
    """Raise InvalidRequest if a body announced as ``size`` bytes (None: unknown) had
    ``got``."""
    if size is not None and got != size:
        raise InvalidRequest(f"Content-Length was {size}, got {got} bytes", "short_body")


#: Times a change of one key is read and tried again because another master changed the key
#: in between, before the request fails (409 key_busy).
RACE_TRIES = 20


async def settled(key: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` (a read of ``key`` and a conditional commit) again each time another
    master changed the key in between (Raced), up to RACE_TRIES times."""
    tries = 1
    while True:
        try:
            return await attempt()
        except NoLongerPending:
            raise
        except Raced:
            if tries == RACE_TRIES:
                raise StateConflict(
                    f"{key!r} changed {RACE_TRIES} times under this request; try again",
                    "key_busy",
                ) from None
            log.info("%r changed under a request, by another master; trying again", key)
            tries += 1


def _check(
    key: str,
    live: IndexRecord | None,
    if_none_match: str | None,
    precondition: Callable[[IndexRecord | None], None] | None,
) -> None:
    """Raise PreconditionFailed if ``if_none_match`` matches the live record's ETag, and
    whatever ``precondition`` raises on it."""
    if live is not None and etag_matches(if_none_match, live.md5):
        raise PreconditionFailed(f"{key!r} exists and its ETag matches If-None-Match")
    if precondition is not None:
        precondition(live)


async def to_completion(step: Awaitable[T]) -> T:
    """Run ``step`` to its end even if the caller is cancelled meanwhile (the cancellation
    is raised once it has ended): a step whose batch may land must not outlive its lock."""
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


def _failures(results: Sequence[object]) -> list[str]:
    return [str(result) for result in results if isinstance(result, BaseException)]


def _agreed(
    replicas: tuple[int, ...], results: Sequence[object], expected: tuple[int, str]
) -> tuple[int, str]:
    """Return ``expected`` (size, MD5) if every replica holds exactly that; else raise
    ReplicaUnavailable."""
    failures = _failures(results)
    if failures:
        raise ReplicaUnavailable("; ".join(failures), "replica_failed")
    for index, result in zip(replicas, results, strict=False):
        if result != expected:
            raise ReplicaUnavailable(
                f"worker {index} stored {result}, master sent {expected}", "replica_mismatch"
            )
    return expected


def _failed(task: asyncio.Task[tuple[int, str]]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


async def _finish(tasks: list[asyncio.Task[tuple[int, str]]], patience: float) -> None:
    """Wait for aborted uploads to end; cancel those stuck on a hung worker."""
    _, stuck = await asyncio.wait(tasks, timeout=patience)
    for task in stuck:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
