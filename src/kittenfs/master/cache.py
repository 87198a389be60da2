"""The hot-value cache: recently read small values, kept by the master, bounded in bytes.

Entries are tagged with the version they hold, and a read only uses an entry whose version is
the key's live version in the index, so a value that was replaced, deleted or unlinked is never
served from here, even if a slow read-through stores it after the change.  Writes also drop
the key's entry before they are acknowledged, so its memory goes at once.
"""

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class CacheStats:
    """What the cache holds and how it has done, for /_cluster."""

    bytes: int = 0
    entries: int = 0
    hits: int = 0
    misses: int = 0


class ValueCache:
    """An LRU of ``key -> (version, value)`` holding at most ``max_bytes`` bytes of values."""

    def __init__(self, max_bytes: int, max_value: int) -> None:
        self.max_bytes = max_bytes
        self.max_value = min(max_value, max_bytes)
        self._entries: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self.stats = CacheStats()

    def holds(self, size: int) -> bool:
        """Return True if values of ``size`` bytes are cached (so reads go through the cache)."""
        return self.max_bytes > 0 and size <= self.max_value

    def get(self, key: str, version: str) -> bytes | None:
        """Return the cached value of ``key`` if it is of ``version``, else None."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry[1]

    def put(self, key: str, version: str, value: bytes) -> None:
        """Keep ``value`` as ``key``'s ``version``, evicting the least recently used entries."""
        if not self.holds(len(value)):
            return
        self.invalidate(key)
        self._entries[key] = (version, value)
        self.stats.bytes += len(value)
        while self.stats.bytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.stats.bytes -= len(evicted)
        self.stats.entries = len(self._entries)

    def invalidate(self, key: str) -> None:
        """Drop ``key``'s entry, whatever version it holds."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.stats.bytes -= len(entry[1])
            self.stats.entries = len(self._entries)
