"""Reads of a key, decided apart from HTTP: where the record comes from, which replicas may
serve it, in what order, and what a failed replica means (read_path.py maps the results to
responses).

1. ``find``: the hot-value cache if it holds the key (its entry is the live record and the
   value, cache.py says why that is correct), else the index.  With masters sharing the
   index, another may have replaced the value: the record is read then, and a cached value
   served only if it is still the record's.
2. ``value``: a small value whole, from the cache or read through from a replica whose
   bytes match the record's MD5, then kept in the cache (guarded by a ticket: the index may
   have changed while the read-through ran).
3. ``candidates``/``choose``: the replicas that are up, not known damaged, and not already
   failed for this very read (the client names those, see read_path.py's fallback).
4. ``stream``: the bytes of a value (or a range of it) from the replicas in turn, the next
   one taking over from the first byte not yet given when one fails part way.

Every replica that fails is accounted for: one that lacks the blob or holds a corrupt copy
is marked damaged (damage.py, which queues its repair); one that cannot be reached counts as
down until its next heartbeat (membership.py); one that stops part way is checked.
"""

import hashlib
import random
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from ..errors import NoGoodReplica, ReplicaError, ReplicaUnavailable
from ..placement import blob_id
from ..records import IndexRecord
from .cache import ValueCache
from .index import Space
from .transport import ReplicaTransport


@dataclass(frozen=True)
class Found:
    """A key's live record, with its value when the cache held it."""

    record: IndexRecord
    value: bytes | None = None


class Records(Protocol):
    """What reads need of the index (index.Index; an S3 gateway's asks its master)."""

    #: Other masters may change the records (index.Index.shared): a cached value is then
    #: checked against the record before it is served.
    shared: bool

    async def get(self, space: Space, key: str) -> IndexRecord | None: ...


class Workers(Protocol):
    """What reads need to know of the workers (membership.Membership; an S3 gateway's view
    is the master's ``/_cluster``)."""

    def live_replicas(self, replicas: tuple[int, ...]) -> list[int]: ...
    def is_up(self, index: int) -> bool: ...
    def suspect(self, index: int, why: str) -> None: ...


class DamageLog(Protocol):
    """Where reads report damaged copies (damage.Damage queues their repair)."""

    def mark(self, record: IndexRecord, worker: int) -> None: ...
    def of(self, record: IndexRecord) -> set[int]: ...
    def suspect(self, record: IndexRecord, workers: tuple[int, ...]) -> None: ...


class Reader:
    """The read decisions of one master (or S3 gateway), over its index, cache, workers
    and transport."""

    def __init__(
        self,
        index: Records,
        cache: ValueCache,
        membership: Workers,
        damage: DamageLog,
        transport: ReplicaTransport,
    ) -> None:
        self.index = index
        self.cache = cache
        self.membership = membership
        self.damage = damage
        self.transport = transport

    async def find(self, key: str, exclude: tuple[int, ...] = ()) -> Found | None:
        """Return ``key``'s live record (and value if cached), or None if it has none.

        ``exclude``: replicas that already failed this read; their copies are checked in the
        background."""
        hit = self.cache.get(key)
        if hit is not None and not self.index.shared:
            found = Found(*hit)
        else:  # with masters sharing the index, another may have replaced a cached value
            record = await self.index.get(Space.LIVE, key)
            if record is None:
                return None
            found = Found(*hit) if hit is not None and hit[0] == record else Found(record)
        if exclude:
            self.damage.suspect(found.record, exclude)
        return found

    def whole_value(self, found: Found, ranged: bool) -> bool:
        """Return True if the read is answered with the value whole (``value``): it is small
        enough for the cache and no range was asked."""
        return self.cache.holds(found.record.size) and not ranged

    async def value(self, found: Found, exclude: tuple[int, ...] = ()) -> bytes:
        """Return the value of a small key: the cached one, or one read through from a replica
        and then cached unless the key changed meanwhile."""
        if found.value is not None:
            return found.value
        self.cache.missed()
        record = found.record
        with self.cache.ticket(record.key) as ticket:
            value = await self._read_whole(record, exclude)
            if await self.index.get(Space.LIVE, record.key) == record:  # not replaced
                self.cache.fill(ticket, record, value)
        return value

    def candidates(self, record: IndexRecord, exclude: tuple[int, ...] = ()) -> list[int]:
        """Return the replicas a read may use: up, and not one that already failed this read;
        those not known damaged first, then the damaged ones (a copy with one bad block still
        serves the rest: a value whose every copy is damaged somewhere is stitched from
        them).  Raise NoGoodReplica or ReplicaUnavailable if there is none."""
        usable = [i for i in self.membership.live_replicas(record.replicas) if i not in exclude]
        damaged = self.damage.of(record)
        if usable:
            return [i for i in usable if i not in damaged] + [i for i in usable if i in damaged]
        if not any(self.membership.is_up(i) for i in record.replicas):
            raise ReplicaUnavailable(f"every replica of {record.key!r} is down", "no_live_replica")
        raise NoGoodReplica(
            f"no live replica of {record.key!r} could serve "
            f"it (tried: {sorted(exclude)}); damaged copies are repaired"
        )

    def choose(self, record: IndexRecord, exclude: tuple[int, ...] = ()) -> int:
        """Return the replica a client is sent to: one of the ``candidates`` not known
        damaged, at random (a damaged one only if all are)."""
        candidates = self.candidates(record, exclude)
        damaged = self.damage.of(record)
        return random.choice([i for i in candidates if i not in damaged] or candidates)

    async def span(self, found: Found, first: int, last: int) -> AsyncGenerator[bytes, None]:
        """Yield bytes ``first`` .. ``last`` of a value ``find`` gave: its cached bytes, or
        from its replicas in turn (``stream``)."""
        if found.value is not None:
            yield found.value[first : last + 1]
            return
        record = found.record
        async for chunk in self.stream(record, first, last, self.candidates(record)):
            yield chunk

    async def stream(
        self, record: IndexRecord, first: int, last: int, replicas: list[int]
    ) -> AsyncGenerator[bytes, None]:
        """Yield bytes ``first`` .. ``last`` of ``record``'s value from ``replicas`` in turn.

        One that fails part way is taken over by the next, from the first byte not yet
        given, and the round goes on as long as it makes progress (a replica with a damaged
        block early may serve the rest): the value is given whole if every block has one
        good copy.  Otherwise raise NoGoodReplica (after some bytes: the stream is cut).
        """
        blob = blob_id(record.key, record.version)
        failures: list[str] = []
        given = 0
        progress = True
        while progress:
            progress = False
            for index in replicas:
                before = given
                start = first + given
                whole = start == 0 and last == record.size - 1
                try:
                    async with self.transport.read(
                        index, blob, start, None if whole else last
                    ) as chunks:
                        try:
                            async for chunk in chunks:
                                given += len(chunk)
                                yield chunk
                        except ReplicaError as exc:
                            # A replica that stops part way cut the stream itself (most often
                            # at a block that failed its check): its copy is suspect, the
                            # worker is not down.
                            failures.append(f"worker {index} stopped after {given} bytes: {exc}")
                            self.damage.suspect(record, (index,))
                            progress |= given > before
                            continue
                except ReplicaError as exc:
                    self._failed(record, index, exc, failures)
                    continue
                if first + given == last + 1:
                    return
                failures.append(f"worker {index} sent {given} of {last - first + 1} bytes")
                progress |= given > before
        raise NoGoodReplica("; ".join(failures), "no_replica_served")

    async def _read_whole(self, record: IndexRecord, exclude: tuple[int, ...]) -> bytes:
        """Read a value whole from a replica whose bytes match its MD5."""
        blob = blob_id(record.key, record.version)
        failures: list[str] = []
        for index in self.candidates(record, exclude):
            try:
                async with self.transport.read(index, blob) as chunks:
                    value = b"".join([chunk async for chunk in chunks])
            except ReplicaError as exc:
                self._failed(record, index, exc, failures)
                continue
            if hashlib.md5(value, usedforsecurity=False).hexdigest() == record.md5:
                return value
            failures.append(f"worker {index}: the bytes do not match the MD5")
            self.damage.mark(record, index)
        raise NoGoodReplica("; ".join(failures), "no_replica_served")

    def _failed(
        self, record: IndexRecord, index: int, exc: ReplicaError, failures: list[str]
    ) -> None:
        """Account for a replica that did not serve: a 404 (it lost the blob) or 500 (its
        copy is corrupt) marks the copy damaged; one that could not be reached counts as down
        for now."""
        failures.append(f"worker {index}: {exc}")
        if exc.status in (404, 500):
            self.damage.mark(record, index)
        if exc.unreachable:
            self.membership.suspect(index, str(exc))
