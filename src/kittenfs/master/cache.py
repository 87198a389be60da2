"""The hot-value cache: recently read or written small values, kept by the master, bounded in bytes.

An entry is a key's live index record with its value, so a hit is answered without touching
the index.  That makes the cache authoritative, which holds because (1) every change of a
key's live record (PUT, DELETE, UNLINK, clear) drops the key's entry after the index batch has
landed and before it is acknowledged, and (2) a read-through stores its value only if the
index still holds the record it read, checked with no await in between (handlers.py), so a
slow read-through cannot bring back a version a write has just replaced.
"""

from collections import OrderedDict
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


class ValueCache:
    """An LRU of ``key -> (live record, value)`` using at most ``max_bytes`` bytes of memory
    (values plus :data:`ENTRY_OVERHEAD` and the key per entry)."""

    def __init__(self, max_bytes: int, max_value: int) -> None:
        self.max_bytes = max_bytes
        self.max_value = min(max_value, max_bytes)
        self._entries: OrderedDict[str, tuple[IndexRecord, bytes]] = OrderedDict()
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
        self.invalidate(key)
        self._entries[key] = (record, value)
        self.stats.bytes += _cost(key, value)
        while self.stats.bytes > self.max_bytes:
            evicted_key, (_, evicted) = self._entries.popitem(last=False)
            self.stats.bytes -= _cost(evicted_key, evicted)
        self.stats.entries = len(self._entries)

    def invalidate(self, key: str) -> None:
        """Drop ``key``'s entry, whatever version it holds."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.stats.bytes -= _cost(key, entry[1])
            self.stats.entries = len(self._entries)


def _cost(key: str, value: bytes) -> int:
    return len(value) + len(key) + ENTRY_OVERHEAD
