"""The master's index in etcd (``EtcdIndex``): the ``Index`` interface (base.py) over an etcd
v3 cluster, through its gRPC API (aetcd's generated messages and stubs; the calls, the
failover between members and the range limits are ours, as aetcd's client has none of them).

``--index etcd://HOST:PORT[,HOST:PORT...]/PREFIX``: the members to ask, in order, and the
prefix every key of the index lies under (``kittenfs`` if none is given), so that several
clusters, or other programs, can share one etcd.

Layout: layout.py's key spaces under ``PREFIX/``, as in LevelDB, plus

- ``m:<master id>`` -> the master's URL, written again at each beat (others time its
  changes on their own clocks), on an etcd lease the master keeps alive: it goes when the
  master has been silent for MASTER_TTL seconds;
- ``l:<name>`` -> the id of the master holding the lease ``name``, attached to an etcd lease
  of the lease's length: etcd's clock ends it;
- ``c:schema`` -> the layout's version (LAYOUT);
- a pending record (``p:``) is stored as ``<owner id>\\n<record>``.

Durability: etcd answers a transaction once a quorum of its members has it in its fsynced
log.  Writes to one key are serialized by etcd: a key change reads the key's records (and
its pending record) in one round trip, checks them (base.expect), and commits in one
transaction that holds only if none of those entries has changed since (their mod
revisions), so a change in between fails it with base.Raced; a pending record gone fails
it with base.NoLongerPending.

Limits: etcd takes at most 128 operations per transaction and 1.5 MiB per request (its
defaults); no change of the index comes near, and imports and rebuilds are written in
transactions of IMPORT_OPS entries.  A rebuild or an import cut off leaves what it wrote (a
rebuild refuses a non-empty target: delete the prefix and start again).  etcd's store is
2 GiB by default (``--quota-backend-bytes``, 8 GiB at most): docs/operations.md gives keys
per GiB.

A request that could not reach a member (refused, or no leader) is sent to the next one;
one that reached it and got no answer has an unknown outcome, as on PostgreSQL, and fails
with errors.IndexUnavailable (503); the next request goes to the next member.
"""

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import grpc
from aetcd import rpc

from ...credentials import Credential
from ...errors import IndexUnavailable
from ...records import IndexRecord, WorkerInfo, decode, encode
from .base import HELD, Entry, EntryId, Kind, NoLongerPending, Raced, Space, expect, held_records
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

T = TypeVar("T")

#: The scheme of an etcd index's URL.
SCHEME = "etcd://"
#: The prefix of the index's keys when the URL names none.
DEFAULT_PREFIX = "kittenfs"
#: The layout's version, in ``c:schema``: a master refuses a newer one.
LAYOUT = 1
#: Seconds any one call may take before it fails (503) instead of hanging.
CALL_TIMEOUT = 10.0
#: Entries one page of a scan reads.
PAGE = 1000
#: Entries one transaction of an import or a rebuild writes (etcd takes 128 operations).
IMPORT_OPS = 100
#: Bytes one transaction of an import or a rebuild writes at most (etcd takes 1.5 MiB).
IMPORT_BYTES = 1 << 20
#: Seconds a master's ``m:`` entry outlives its last beat: longer than any ``within`` asked.
MASTER_TTL = 60
#: Times a change of state only the index reads (a worker's registration) is tried again
#: when another master changed that state in between.
RETRIES = 20
#: Seconds within which a master counts as attached (it beats every second).
ATTACHED_WITHIN = 3.0

#: The largest answer taken from etcd: a page of PAGE records of up to 16 KiB of metadata
#: each, and more (gRPC's default of 4 MiB is not).
MAX_ANSWER = 64 << 20
#: The gRPC channel's options: reconnect soon after a member comes back; large pages.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.max_receive_message_length", MAX_ANSWER),
]
#: What gRPC and etcd say when a request never took effect: the member could not be
#: reached at all, or had no leader to propose it to.  (A connection reset mid-call says
#: "connect" too, but its request may have landed.)
_UNSENT = ("failed to connect to all addresses", "etcdserver: no leader")
#: The errors that mean a member did not answer (as opposed to a refused request).
_AWAY = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_MASTERS = b"m:"
_LEASES = b"l:"
_SCHEMA = b"c:schema"


class ParsedURL(NamedTuple):
    """An etcd index's URL, parsed: the members' ``host:port`` and the key prefix."""

    endpoints: list[str]
    prefix: str


def parse_url(url: str) -> ParsedURL:
    """Parse ``etcd://HOST:PORT[,HOST:PORT...]/PREFIX``; raise ValueError, saying why, if it
    is not one."""
    if not url.startswith(SCHEME):
        raise ValueError(f"{url}: not etcd://HOST:PORT[,HOST:PORT...]/PREFIX")
    netloc, _, path = url.removeprefix(SCHEME).partition("/")
    if "@" in netloc:
        raise ValueError(
            f"{url}: etcd's authentication is not supported; reach it on a trusted network"
        )
    endpoints = [part.strip() for part in netloc.split(",") if part.strip()]
    if not endpoints:
        raise ValueError(f"{url}: name at least one etcd member as HOST:PORT")
    for endpoint in endpoints:
        parts = urlsplit(f"//{endpoint}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"{url}: {endpoint!r} is not HOST:PORT")
    prefix = path.strip("/") or DEFAULT_PREFIX
    return ParsedURL(endpoints, prefix)


def prefix_end(prefix: bytes) -> bytes:
    """Return the least key above every key that starts with ``prefix`` (etcd's range end)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"  # etcd: every key from the start on
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _unsent(error: grpc.aio.AioRpcError) -> bool:
    """Return True if a call failed before its request could take effect (the member could
    not be reached, or had no leader), so that another member may be asked."""
    details = error.details() or ""
    return error.code() == grpc.StatusCode.UNAVAILABLE and any(u in details for u in _UNSENT)


def _failure(url: str, endpoint: str, error: grpc.aio.AioRpcError) -> IndexUnavailable:
    """Return the IndexUnavailable (503) that an etcd error is, saying which in words."""
    details = error.details() or ""
    code = error.code().name
    if "database space exceeded" in details:
        return IndexUnavailable(f"the index at {url} is full (etcd's quota): {details}")
    if error.code() == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return IndexUnavailable(
            f"the index at {url} was compacted under a long read (start it again): {details}"
        )
    return IndexUnavailable(f"the index at {url} failed: {endpoint}: {code}: {details}")


class _Stubs(NamedTuple):
    kv: Any
    lease: Any


class EtcdClient:
    """The calls the index makes to an etcd cluster, with failover between its members."""

    def __init__(self, endpoints: list[str], url: str) -> None:
        self.endpoints = endpoints
        self.url = url
        self._at = 0
        self._channels: dict[str, tuple[Any, _Stubs]] = {}

    def _stubs(self, endpoint: str) -> _Stubs:
        if endpoint not in self._channels:
            channel = grpc.aio.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
            self._channels[endpoint] = (
                channel,
                _Stubs(rpc.KVStub(channel), rpc.LeaseStub(channel)),
            )
        return self._channels[endpoint][1]

    async def call(self, invoke: Callable[[_Stubs], Awaitable[T]], resend: bool = False) -> T:
        """Run ``invoke`` against the member that answered last; if it could not reach it
        (or, when ``resend``: the call is a read, if the member did not answer), against the
        next, and so on once round.  Every gRPC error becomes IndexUnavailable (503)."""
        start = self._at
        error: grpc.aio.AioRpcError | None = None
        endpoint = ""
        for step in range(len(self.endpoints)):
            at = (start + step) % len(self.endpoints)
            endpoint = self.endpoints[at]
            try:
                answer = await invoke(self._stubs(endpoint))
            except grpc.aio.AioRpcError as exc:
                error = exc
                if exc.code() not in _AWAY:
                    break  # the member answered: refused, not away
                self._at = (at + 1) % len(self.endpoints)  # the next call starts elsewhere
                if not (resend or _unsent(exc)):
                    break  # it may have landed: its outcome is unknown
                continue
            self._at = at
            return answer
        assert error is not None
        raise _failure(self.url, endpoint, error) from None

    async def range(
        self,
        key: bytes,
        end: bytes = b"",
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
    ) -> Any:
        """Return etcd's RangeResponse for ``[key, end)`` (``key`` alone without ``end``)."""
        request = rpc.RangeRequest(
            key=key, range_end=end, limit=limit, revision=revision, keys_only=keys_only
        )
        return await self.call(lambda s: s.kv.Range(request, timeout=CALL_TIMEOUT), resend=True)

    async def txn(self, compare: list[Any], success: list[Any], failure: Iterable[Any] = ()) -> Any:
        """Run one transaction; return etcd's TxnResponse.  One that only reads is sent to
        the next member when one does not answer, as a range is."""
        failure = list(failure)
        request = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        reads = all(op.WhichOneof("request") == "request_range" for op in [*success, *failure])
        return await self.call(lambda s: s.kv.Txn(request, timeout=CALL_TIMEOUT), resend=reads)

    async def delete(self, key: bytes) -> int:
        """Delete ``key``; return how many keys went (0 or 1)."""
        request = rpc.DeleteRangeRequest(key=key)
        response = await self.call(lambda s: s.kv.DeleteRange(request, timeout=CALL_TIMEOUT))
        return int(response.deleted)

    async def grant(self, ttl: int) -> int:
        """Grant a new etcd lease of ``ttl`` seconds; return its id."""
        request = rpc.LeaseGrantRequest(TTL=ttl)
        response = await self.call(lambda s: s.lease.LeaseGrant(request, timeout=CALL_TIMEOUT))
        return int(response.ID)

    async def keep_alive(self, lease: int) -> int:
        """Renew the etcd lease ``lease`` to its granted length; return its seconds left
        (0 or less: it had run out)."""

        async def renew(stubs: _Stubs) -> int:
            stream = stubs.lease.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease)]), timeout=CALL_TIMEOUT
            )
            async for response in stream:
                return int(response.TTL)
            return 0

        return await self.call(renew, resend=True)

    async def revoke(self, lease: int) -> None:
        """Revoke the etcd lease ``lease`` (its keys go with it)."""
        request = rpc.LeaseRevokeRequest(ID=lease)
        await self.call(lambda s: s.lease.LeaseRevoke(request, timeout=CALL_TIMEOUT))

    async def close(self) -> None:
        for channel, _ in self._channels.values():
            await channel.close()
        self._channels.clear()


def _put(key: bytes, value: bytes, lease: int = 0) -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))


def _delete(key: bytes) -> Any:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))


def _get(key: bytes, end: bytes = b"", count_only: bool = False) -> Any:
    return rpc.RequestOp(
        request_range=rpc.RangeRequest(key=key, range_end=end, count_only=count_only)
    )


def _unchanged(key: bytes, revision: int) -> Any:
    """The compare that ``key`` was last changed at ``revision`` (0: it does not exist)."""
    return rpc.Compare(
        key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision
    )


def _absent(key: bytes) -> Any:
    return rpc.Compare(
        key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
    )


def _found(response: Any) -> Any:
    """Return the one entry a range operation of a transaction found, or None."""
    kvs = response.response_range.kvs
    return kvs[0] if kvs else None


def _pending_value(owner: str, record: bytes) -> bytes:
    return owner.encode("utf-8") + b"\n" + record


def _pending_parts(value: bytes) -> tuple[str, bytes]:
    """Return the owner and the record of a stored pending value."""
    owner, _, record = value.partition(b"\n")
    return owner.decode("utf-8"), record


@dataclass
class _Change:
    """What one key change writes, once its checks hold."""

    puts: dict[bytes, bytes]
    deletes: list[bytes]


class EtcdIndex:
    """The Index (base.py) under a prefix of an etcd cluster; open it with :meth:`open`."""

    #: Other masters may use the same index at once.
    shared = True

    def __init__(self, client: EtcdClient, prefix: str, owner: str) -> None:
        self.client = client
        self.url = client.url
        self._prefix = prefix.encode("utf-8") + b"/"
        #: The master using this index: its writes in flight carry this id.
        self.owner = owner
        self._beat_lease = 0
        #: The etcd leases of the leases this master holds, by name: revoked at close.
        self._holding: dict[str, int] = {}
        #: Each master's ``m:`` entry's mod revision, and when this process saw it change.
        self._heard: dict[str, tuple[int, float]] = {}

    @classmethod
    async def open(cls, url: str, owner: str = "") -> "EtcdIndex":
        """Connect to the etcd cluster ``url`` names and check (or write) the layout's
        version; ``owner`` is the id of the master that uses it.

        Raise IndexUnavailable if no member answers, ValueError if ``url`` is not an etcd
        index's or its layout is newer than this kittenFS knows."""
        endpoints, prefix = parse_url(url)
        index = cls(EtcdClient(endpoints, url), prefix, owner)
        try:
            found = await index._setting(_SCHEMA, str(LAYOUT))
            if int(found) > LAYOUT:
                raise ValueError(
                    f"{url}: layout version {found} is newer than this kittenfs knows "
                    f"({LAYOUT}); upgrade kittenfs"
                )
        except BaseException:
            await index.client.close()
            raise
        return index

    def _at(self, key: bytes) -> bytes:
        return self._prefix + key

    async def _get(self, key: bytes) -> Any:
        kvs = (await self.client.range(self._at(key))).kvs
        return kvs[0] if kvs else None

    async def _scan(
        self, low: bytes, high: bytes, keys_only: bool = False, revision: int = 0
    ) -> AsyncIterator[Any]:
        """Yield the entries of ``[low, high)`` (layout keys, unprefixed) in key order, a
        page at a time; each page is read on its own unless ``revision`` pins them."""
        start, end = self._at(low), self._at(high)
        while True:
            page = await self.client.range(
                start, end, limit=PAGE, revision=revision, keys_only=keys_only
            )
            for kv in page.kvs:
                yield kv
            if not page.more or not page.kvs:
                return
            start = page.kvs[-1].key + b"\0"

    def _space_range(self, space: bytes, prefix: bytes = b"") -> tuple[bytes, bytes]:
        low = space + prefix
        return low, prefix_end(low)

    def _name(self, kv: Any, strip: int) -> bytes:
        return bytes(kv.key[len(self._prefix) + strip :])

    # Keys and their records.

    async def get(self, space: Space, key: str) -> IndexRecord | None:
        """Return the record of ``key`` in a key-named space (LIVE or UNLINKED), or None."""
        kv = await self._get(key_of(space, key))
        return None if kv is None else decode(IndexRecord, kv.value)

    async def current(self, key: str) -> tuple[Space, IndexRecord] | None:
        """Return the key's live or unlinked record, with its space, or None."""
        found, _ = await self._held(key)
        return found

    async def _held(
        self, key: str, *also: bytes
    ) -> tuple[tuple[Space, IndexRecord] | None, list[Any]]:
        """Read the key's live and unlinked entries and the entries ``also`` names in one
        round trip; return the key's record with its space, and every entry read (None for
        those missing), in that order."""
        keys = [key_of(space, key) for space in HELD] + list(also)
        response = await self.client.txn([], [_get(self._at(k)) for k in keys])
        entries = [_found(r) for r in response.responses]
        for space, kv in zip(HELD, entries, strict=False):
            if kv is not None:
                return (space, decode(IndexRecord, kv.value)), entries
        return None, entries

    def all_current(self) -> AsyncIterator[tuple[Space, IndexRecord]]:
        """Yield every live, then every unlinked, record with its space, a page at a time."""
        return held_records(self)

    async def records(
        self, space: Space, prefix: str = "", start: str = ""
    ) -> AsyncIterator[IndexRecord]:
        """Yield the records of a space in key order, from ``start`` on, under ``prefix``."""
        low = key_of(space, max(prefix, start))
        async for kv in self._scan(low, prefix_end(key_of(space, prefix))):
            yield decode(IndexRecord, kv.value)

    async def keys(
        self, space: Space, prefix: str, start: str, limit: int
    ) -> tuple[list[str], str]:
        """Return up to ``limit`` keys of a space under ``prefix`` from ``start`` on, and the
        first key of the next page ("" on the last page)."""
        low = self._at(key_of(space, max(prefix, start)))
        high = self._at(prefix_end(key_of(space, prefix)))
        page = await self.client.range(low, high, limit=limit + 1, keys_only=True)
        strip = len(self._prefix) + len(space.value)
        found = [bytes(kv.key[strip:]).decode("utf-8") for kv in page.kvs]
        return (found[:limit], found[limit]) if len(found) > limit else (found, "")

    # The write path, moves and garbage.

    async def begin_write(self, pending: IndexRecord) -> None:
        """Record a write as in flight before any replica receives a byte."""
        await self._begin(blob_key(Space.PENDING, pending), pending, "write")

    async def begin_move(self, move: IndexRecord) -> None:
        """Record a move's copies (``move.replicas``) as in flight before any is made;
        Raced if a move of this version is in flight already (another master's)."""
        await self._begin(move_key(move), move, "move")

    async def _begin(self, key: bytes, record: IndexRecord, what: str) -> None:
        response = await self.client.txn(
            [_absent(self._at(key))],
            [_put(self._at(key), _pending_value(self.owner, encode(record)))],
        )
        if not response.succeeded:
            raise Raced(f"a {what} of {record.key!r} is in flight already")

    async def commit_write(self, record: IndexRecord, replaced: list[IndexRecord]) -> None:
        """Make ``record`` the key's live value; the versions it replaces become garbage.
        Raced if ``replaced`` is not the key's record now, or the write is not pending."""
        puts = {key_of(Space.LIVE, record.key): encode(record)}
        puts.update({blob_key(Space.GARBAGE, old): encode(old) for old in replaced})
        await self._change(
            record.key,
            replaced[0] if replaced else None,
            None,
            _Change(puts, [key_of(Space.UNLINKED, record.key)]),
            pending=blob_key(Space.PENDING, record),
        )

    async def commit_move(
        self, space: Space, record: IndexRecord, moved: IndexRecord, dropped: tuple[int, ...]
    ) -> None:
        """Switch a key's record to ``moved``; each dropped replica gets its own garbage
        entry, stamped now so the reaper gives reads already sent there their grace.  Raced
        if the key's record is no longer ``record`` in ``space``, or the move is not pending."""
        puts = {key_of(space, record.key): encode(moved)}
        puts.update(replica_garbage(record, dropped, int(time.time() * 1000)))
        await self._change(record.key, record, space, _Change(puts, []), pending=move_key(record))

    async def update(self, space: Space, record: IndexRecord, updated: IndexRecord) -> None:
        """Replace a key's record ``record`` in ``space`` with ``updated``."""
        change = _Change({key_of(space, record.key): encode(updated)}, [])
        await self._change(record.key, record, space, change)

    async def unlink(self, record: IndexRecord) -> None:
        """Hide a live value from reads and listing, keeping its bytes."""
        change = _Change(
            {key_of(Space.UNLINKED, record.key): encode(record)},
            [key_of(Space.LIVE, record.key)],
        )
        await self._change(record.key, record, Space.LIVE, change)

    async def remove(self, record: IndexRecord) -> None:
        """Remove a live or unlinked value from the index; its replicas become garbage."""
        change = _Change(
            {blob_key(Space.GARBAGE, record): encode(record)},
            [key_of(space, record.key) for space in HELD],
        )
        await self._change(record.key, record, None, change)

    async def _change(
        self,
        key: str,
        expected: IndexRecord | None,
        space: Space | None,
        change: _Change,
        pending: bytes | None = None,
    ) -> None:
        """Write ``change`` if ``key``'s record is still ``expected`` (in ``space``, if
        given: base.expect) and, given, the ``pending`` record is this master's, then drop
        that pending record; all in one transaction that holds only if none of what was read
        changed meanwhile.  Otherwise raise Raced (NoLongerPending: the pending record went)."""
        found, entries = await self._held(key, *([pending] if pending else []))
        expect(key, found, expected, space)
        held_keys = [key_of(s, key) for s in HELD]
        compare = [
            _unchanged(self._at(k), kv.mod_revision if kv is not None else 0)
            for k, kv in zip(held_keys, entries, strict=False)
        ]
        deletes = list(change.deletes)
        if pending is not None:
            kv = entries[-1]
            if kv is None or _pending_parts(kv.value)[0] != self.owner:
                raise NoLongerPending(f"the change of {key!r} is no longer pending")
            compare.append(_unchanged(self._at(pending), kv.mod_revision))
            deletes.append(pending)
        success = [_delete(self._at(k)) for k in deletes if k not in change.puts]
        success += [_put(self._at(k), v) for k, v in change.puts.items()]
        failure = [_get(self._at(pending))] if pending is not None else []
        response = await self.client.txn(compare, success, failure)
        if response.succeeded:
            return
        if pending is not None and _found(response.responses[0]) is None:
            raise NoLongerPending(f"the change of {key!r} is no longer pending")
        raise Raced(f"{key!r} changed while it was being changed")

    async def abandon_write(self, pending: IndexRecord) -> None:
        """Turn a failed write's pending record into garbage, for replicas not yet cleaned;
        nothing, if the record is gone (its commit landed after all)."""
        garbage = {blob_key(Space.GARBAGE, pending): encode(pending)}
        await self._take_pending(blob_key(Space.PENDING, pending), pending, garbage)

    async def abandon_move(self, move: IndexRecord) -> list[tuple[EntryId, IndexRecord]]:
        """Turn a failed move's copies into one garbage entry each; return the entries."""
        entries = replica_garbage(move, move.replicas, 0)
        if not await self._take_pending(move_key(move), move, entries):
            return []  # committed after all, or abandoned already
        return [(key, decode(IndexRecord, raw)) for key, raw in entries.items()]

    async def _take_pending(
        self, key: bytes, record: IndexRecord, garbage: dict[bytes, bytes]
    ) -> bool:
        """Replace the pending entry ``key`` by ``garbage`` if it still holds ``record``;
        return whether it did."""
        kv = await self._get(key)
        if kv is None or decode(IndexRecord, _pending_parts(kv.value)[1]) != record:
            return False
        response = await self.client.txn(
            [_unchanged(self._at(key), kv.mod_revision)],
            [_delete(self._at(key))] + [_put(self._at(k), v) for k, v in garbage.items()],
        )
        return bool(response.succeeded)

    async def move_in_flight(self, record: IndexRecord) -> tuple[int, ...]:
        """Return the workers that a move in flight is copying ``record``'s version to."""
        kv = await self._get(move_key(record))
        return () if kv is None else decode(IndexRecord, _pending_parts(kv.value)[1]).replicas

    async def owned(self, blob: str) -> bool:
        """Return True if a pending record or a garbage entry exists for ``blob``."""
        ranges = [
            self._space_range(space.value, blob.encode("ascii"))
            for space in (Space.PENDING, Space.GARBAGE)
        ]
        response = await self.client.txn(
            [], [_get(self._at(low), self._at(high), count_only=True) for low, high in ranges]
        )
        return any(r.response_range.count for r in response.responses)

    async def garbage(self) -> list[tuple[EntryId, IndexRecord]]:
        """Return every garbage entry as (its key in the layout, its record)."""
        low, high = self._space_range(Space.GARBAGE.value)
        return [
            (self._name(kv, 0), decode(IndexRecord, kv.value)) async for kv in self._scan(low, high)
        ]

    async def garbage_entry(self, entry: EntryId) -> IndexRecord | None:
        """Return the garbage entry stored under ``entry`` now, or None."""
        kv = await self._get(entry)
        return None if kv is None else decode(IndexRecord, kv.value)

    async def forget(self, entry: EntryId) -> None:
        """Drop one garbage entry, by its key, once its replicas have been cleaned."""
        await self.client.delete(self._at(entry))

    async def forget_garbage(self, record: IndexRecord) -> None:
        """Drop a version's garbage record whose replicas have all been cleaned."""
        await self.forget(blob_key(Space.GARBAGE, record))

    async def pending_to_garbage(self, dead_after: float, at_start: bool = True) -> int:
        """Turn into garbage the writes and moves in flight of masters not heard from for
        ``dead_after`` seconds (or unknown: an imported index's) and, ``at_start``, of this
        master (left by a crash)."""
        alive = {master for master, _ in await self.masters(dead_after)}
        low, high = self._space_range(Space.PENDING.value)
        taken = []
        async for kv in self._scan(low, high):
            owner, raw = _pending_parts(kv.value)
            mine = owner == self.owner
            if (mine and at_start) or (not mine and owner not in alive):
                taken.append((self._name(kv, 0), decode(IndexRecord, raw)))
        for key, record in taken:
            if key.endswith(MOVE):
                await self.abandon_move(record)
            else:
                await self.abandon_write(record)
        return len(taken)

    async def load(
        self, records: list[IndexRecord], workers: list[WorkerInfo], cluster: str | None
    ) -> None:
        """Write a rebuilt index's live records, workers and cluster id, in transactions of
        IMPORT_OPS records."""
        if cluster is not None:
            await self.cluster_id(cluster)
        for info in workers:
            await self.save_worker(info)
        await self._put_all((key_of(Space.LIVE, r.key), encode(r)) for r in records)

    async def _put_all(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Put every (key, value), in transactions within etcd's limits."""
        batch: list[Any] = []
        size = 0
        for key, value in items:
            if batch and (len(batch) >= IMPORT_OPS or size + len(key) + len(value) > IMPORT_BYTES):
                await self.client.txn([], batch)
                batch, size = [], 0
            batch.append(_put(self._at(key), value))
            size += len(key) + len(value)
        if batch:
            await self.client.txn([], batch)

    # Workers.

    async def workers(self) -> list[WorkerInfo]:
        """Return every registered worker, by index."""
        low, high = self._space_range(b"w:")
        return [decode(WorkerInfo, kv.value) async for kv in self._scan(low, high)]

    async def save_worker(self, info: WorkerInfo) -> None:
        """Persist a worker's registration, and that its index is never to be given again;
        Raced if the index is another worker's."""
        key = worker_key(info.index)
        for _ in range(RETRIES):
            response = await self.client.txn([], [_get(self._at(key)), _get(self._at(NEXT_WORKER))])
            held, given = (_found(r) for r in response.responses)
            if held is not None and decode(WorkerInfo, held.value).id != info.id:
                raise Raced(f"worker index {info.index} belongs to another worker")
            next_index = max(
                int(given.value) if given else await self.next_worker(), info.index + 1
            )
            saved = await self.client.txn(
                [
                    _unchanged(self._at(key), held.mod_revision if held else 0),
                    _unchanged(self._at(NEXT_WORKER), given.mod_revision if given else 0),
                ],
                [
                    _put(self._at(key), encode(info)),
                    _put(self._at(NEXT_WORKER), b"%d" % next_index),
                ],
            )
            if saved.succeeded:
                return
        raise Raced(f"worker index {info.index} kept changing")

    async def next_worker(self) -> int:
        """Return the lowest index never given to a worker (removed ones included)."""
        kv = await self._get(NEXT_WORKER)
        if kv is not None:
            return int(kv.value)
        return max((w.index + 1 for w in await self.workers()), default=0)

    async def draining(self) -> set[int]:
        """Return the indices of the workers being drained."""
        low, high = self._space_range(b"x:")
        return {int(self._name(kv, 2)) async for kv in self._scan(low, high, keys_only=True)}

    async def set_draining(self, index: int, draining: bool) -> None:
        """Mark a worker as being drained (or not), durably."""
        if draining:
            await self.client.txn([], [_put(self._at(draining_key(index)), b"draining")])
        else:
            await self.client.delete(self._at(draining_key(index)))

    async def remove_worker(self, index: int) -> None:
        """Forget a worker: its registration and its drain mark."""
        await self.client.txn(
            [], [_delete(self._at(worker_key(index))), _delete(self._at(draining_key(index)))]
        )

    # Credentials and ids.

    async def credential(self, access_key: str) -> Credential | None:
        """Return the credential with this access key, or None."""
        kv = await self._get(credential_key(access_key))
        return None if kv is None else decode(Credential, kv.value)

    async def credentials(self) -> list[Credential]:
        """Return every credential, by access key."""
        low, high = self._space_range(b"a:")
        return [decode(Credential, kv.value) async for kv in self._scan(low, high)]

    async def save_credential(self, credential: Credential) -> None:
        """Store a credential, durably."""
        key = credential_key(credential.access_key)
        await self.client.txn([], [_put(self._at(key), encode(credential))])

    async def delete_credential(self, access_key: str) -> bool:
        """Revoke a credential; return whether it existed."""
        return await self.client.delete(self._at(credential_key(access_key))) > 0

    async def cluster_id(self, new_id: str) -> str:
        """Return the id of this master's cluster, storing ``new_id`` the first time."""
        return await self._setting(b"c:cluster", new_id)

    async def key_check(self, new_check: str) -> str:
        """Return the check value of the master key, storing ``new_check`` the first time."""
        return await self._setting(b"c:key_check", new_check)

    async def setting(self, name: str) -> str | None:
        """Return the setting ``name``, or None."""
        kv = await self._get(SETTING + name.encode("ascii"))
        return None if kv is None else bytes(kv.value).decode("utf-8")

    async def put_setting(self, name: str, value: str | None) -> None:
        """Store the setting ``name`` (None: drop it), durably."""
        key = self._at(SETTING + name.encode("ascii"))
        if value is None:
            await self.client.delete(key)
        else:
            await self.client.txn([], [_put(key, value.encode("utf-8"))])

    async def _setting(self, name: bytes, first: str) -> str:
        key = self._at(name)
        response = await self.client.txn(
            [_absent(key)], [_put(key, first.encode("utf-8"))], [_get(key)]
        )
        if response.succeeded:
            return first
        return bytes(_found(response.responses[0]).value).decode("utf-8")

    # Masters sharing the index.

    async def beat(self, url: str) -> None:
        """Record that this master is alive, and reachable at ``url``: write its ``m:`` entry
        again (a new mod revision is the beat others see), on an etcd lease renewed here
        (a new one if it ran out), so that the entry goes MASTER_TTL seconds after the last
        beat."""
        if self._beat_lease and await self.client.keep_alive(self._beat_lease) <= 0:
            self._beat_lease = 0
        if not self._beat_lease:
            self._beat_lease = await self.client.grant(MASTER_TTL)
        key = self._at(_MASTERS + self.owner.encode("utf-8"))
        await self.client.txn([], [_put(key, url.encode("utf-8"), self._beat_lease)])

    async def masters(self, within: float) -> list[tuple[str, str]]:
        """Return (id, URL) of every master heard from within ``within`` seconds, by id: by
        this process's clock, since it last saw the master's ``m:`` entry change (a master
        first seen counts as heard from then).  etcd's lease timers are not used: a new etcd
        leader restarts every lease's time to live, which would bring dead masters back."""
        low, high = self._space_range(_MASTERS)
        now = time.monotonic()
        found = []
        async for kv in self._scan(low, high):
            master = self._name(kv, 2).decode("utf-8")
            seen = self._heard.get(master)
            if seen is None or seen[0] != kv.mod_revision:
                seen = self._heard[master] = (kv.mod_revision, now)
            if now - seen[1] < within:
                found.append((master, bytes(kv.value).decode("utf-8")))
        return found

    async def lease(self, name: str, seconds: float) -> str:
        """Take the lease ``name`` for this master, or keep it, for ``seconds`` (rounded up to
        a whole second, etcd's unit) unless another master holds it; return its holder.  The
        entry is attached to an etcd lease of that length: etcd's clock ends it."""
        key = self._at(_LEASES + name.encode("utf-8"))
        for _ in range(RETRIES):
            kv = await self._get(_LEASES + name.encode("utf-8"))
            if kv is not None:
                holder = bytes(kv.value).decode("utf-8")
                if holder != self.owner:
                    self._holding.pop(name, None)
                    return holder
                if await self.client.keep_alive(kv.lease) > 0:
                    self._holding[name] = kv.lease
                    return holder
                continue  # ours ran out just now: its entry is going
            granted = await self.client.grant(max(1, math.ceil(seconds)))
            response = await self.client.txn(
                [_absent(key)], [_put(key, self.owner.encode("utf-8"), granted)], [_get(key)]
            )
            if response.succeeded:
                self._holding[name] = granted
                return self.owner
            with contextlib.suppress(IndexUnavailable):  # it runs out on its own anyway
                await self.client.revoke(granted)
            taken = _found(response.responses[0])
            if taken is not None:
                return bytes(taken.value).decode("utf-8")
        raise IndexUnavailable(f"the lease {name!r} at {self.url} kept changing")

    # Copying between engines.

    async def masters_attached(self) -> int:
        """Return how many other masters beat while this one watched for ATTACHED_WITHIN
        seconds (they beat every second)."""
        await self.masters(ATTACHED_WITHIN)
        await asyncio.sleep(ATTACHED_WITHIN)
        return sum(1 for m, _ in await self.masters(ATTACHED_WITHIN) if m != self.owner)

    async def export(self) -> AsyncGenerator[Entry, None]:
        """Yield every entry, ordered by its key, from one revision of the store (every
        page is read at the first page's revision)."""
        kinds = {kind.value.encode("ascii"): kind for kind in Kind}
        revision = 0
        start, end = self._prefix, prefix_end(self._prefix)
        while True:
            page = await self.client.range(start, end, limit=PAGE, revision=revision)
            revision = revision or int(page.header.revision)
            for kv in page.kvs:
                name = self._name(kv, 0)
                if name[:1] not in kinds or name[1:2] != b":" or name == _SCHEMA:
                    continue  # m:, l:, the layout's version, and keys not of this index
                value = bytes(kv.value)
                if name.startswith(Space.PENDING.value):
                    value = _pending_parts(value)[1]
                yield Entry(kinds[name[:1]], name[2:].decode("utf-8"), value)
            if not page.more or not page.kvs:
                return
            start = page.kvs[-1].key + b"\0"

    async def import_entries(self, entries: list[Entry]) -> None:
        """Write ``entries``, in transactions within etcd's limits (pending records with no
        owner: the first master's pass takes them for dead)."""
        await self._put_all(
            (
                e.kind.value.encode("ascii") + b":" + e.name.encode("utf-8"),
                _pending_value("", e.value) if e.kind is Kind.PENDING else e.value,
            )
            for e in entries
        )

    async def close(self) -> None:
        """Leave (revoke the etcd leases of this master's ``m:`` entry and of the leases it
        holds, so that the other masters see it gone, and another takes the duties, at
        once), then close the connections to etcd."""
        leaving = [lease for lease in (self._beat_lease, *self._holding.values()) if lease]
        self._beat_lease, self._holding = 0, {}
        revokes = (self.client.revoke(lease) for lease in leaving)
        with contextlib.suppress(TimeoutError):  # each revoke's own failure is returned
            await asyncio.wait_for(asyncio.gather(*revokes, return_exceptions=True), CALL_TIMEOUT)
        await asyncio.shield(self.client.close())
