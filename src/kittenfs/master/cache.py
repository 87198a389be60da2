"""The hot-value cache: recently read or written small values, kept by the master, bounded in bytes.

An entry is a key's live index record with its value, so a hit is answered without touching
the index.  That makes the cache authoritative, which holds because (1) every change of a
key's live record (PUT, DELETE, UNLINK, clear) drops the key's entry after the index batch has
landed and before it is acknowledged, and (2) a read-through stores its value only if no
change of the key has been invalidated since the read-through began (its ``Ticket``) and the
index still holds the record it read, checked after the ticket was taken (reader.py).  Index
reads may suspend (index/base.py), so the check alone is not enough: a write could commit and
invalidate between the check and the store; the ticket turns stale when it does.
"""

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..records import IndexRecord

#: Bytes of memory an entry costs beyond its value: its key, index record and LRU node
#: (about 480 measured with tracemalloc for short keys; the key's length is added).  Counted
#: against the bound, so a cache of many tiny values cannot outgrow it several times over.
ENTRY_OVERHEAD = 512


@dataclass
class CacheStats:
    """What the cache holds and how it has done, for /_cluster."""

    bytes: int = 0
    entries: int = 0
    hits: int = 0
    misses: int = 0


class Ticket:
    """A read-through's right to fill the cache, lost (``stale``) when its key is invalidated."""

    __slots__ = ("stale",)

    def __init__(self) -> None:
        self.stale = False


class ValueCache:
    """An LRU of ``key -> (live record, value)`` using at most ``max_bytes`` bytes of memory
    (values plus :data:`ENTRY_OVERHEAD` and the key per entry)."""

    def __init__(self, max_bytes: int, max_value: int) -> None:
        self.max_bytes = max_bytes
        self.max_value = min(max_value, max_bytes)
        self._entries: OrderedDict[str, tuple[IndexRecord, bytes]] = OrderedDict()
        self._tickets: dict[str, set[Ticket]] = {}  # the read-throughs under way, by key
        self.stats = CacheStats()

    def holds(self, size: int) -> bool:
        """Return True if values of ``size`` bytes are cached (so reads go through the cache)."""
        return self.max_bytes > 0 and size <= self.max_value

    def get(self, key: str) -> tuple[IndexRecord, bytes] | None:
        """Return ``key``'s live record and value if cached, else None.

        Every read looks here first, whatever its size, so only a read that then fetches a
        cacheable value from a replica counts as a miss (``missed``).
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry

    def missed(self) -> None:
        """Count a read of a cacheable value that had to go to a replica."""
        self.stats.misses += 1

    def put(self, record: IndexRecord, value: bytes) -> None:
        """Keep ``value`` as the value of ``record`` (the key's live record), evicting the
        least recently used entries."""
        if not self.holds(len(value)):
            return
        key = record.key
        self._drop(key)
        self._entries[key] = (record, value)
        self.stats.bytes += _cost(key, value)
        while self.stats.bytes > self.max_bytes:
            evicted_key, (_, evicted) = self._entries.popitem(last=False)
            self.stats.bytes -= _cost(evicted_key, evicted)
        self.stats.entries = len(self._entries)

    @contextmanager
    def ticket(self, key: str) -> Iterator[Ticket]:
        """Hold a ticket for a read-through of ``key``; take it before the index is read for
        the check that precedes ``fill``."""
        ticket = Ticket()
        holders = self._tickets.setdefault(key, set())
        holders.add(ticket)
        try:
            yield ticket
        finally:
            holders.discard(ticket)
            if not holders and self._tickets.get(key) is holders:
                del self._tickets[key]

    def fill(self, ticket: Ticket, record: IndexRecord, value: bytes) -> bool:
        """Keep a read-through's ``value`` of ``record`` unless ``ticket`` has turned stale
        (the key changed meanwhile); return whether it was kept."""
        if ticket.stale:
            return False
        self.put(record, value)
        return True

    def invalidate(self, key: str) -> None:
        """Drop ``key``'s entry, whatever version it holds, and stale its read-throughs."""
        for ticket in self._tickets.pop(key, ()):
            ticket.stale = True
        self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.stats.bytes -= _cost(key, entry[1])
            self.stats.entries = len(self._entries)


def _cost(key: str, value: bytes) -> int:
    return len(value) + len(key) + ENTRY_OVERHEAD
