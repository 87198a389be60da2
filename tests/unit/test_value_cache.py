"""The hot-value cache (master/cache.py): bounded in bytes, LRU, and only for small values."""

from kittenfs.master.cache import ENTRY_OVERHEAD, ValueCache
from kittenfs.records import IndexRecord


def record(key: str, size: int) -> IndexRecord:
    return IndexRecord(key, "v", size, "m", (0,), 1, 1)


def test_a_hit_returns_the_record_and_value_and_counts() -> None:
    cache = ValueCache(10_000, 100)
    cache.put(record("/a", 3), b"abc")
    assert cache.get("/a") == (record("/a", 3), b"abc")
    assert cache.get("/b") is None
    cache.missed()
    assert (cache.stats.hits, cache.stats.misses, cache.stats.entries) == (1, 1, 1)


def test_values_over_the_limit_are_not_kept() -> None:
    cache = ValueCache(10_000, 100)
    assert cache.holds(100) and not cache.holds(101)
    cache.put(record("/big", 101), b"x" * 101)
    assert cache.get("/big") is None
    assert not ValueCache(0, 100).holds(1)  # a cache of 0 bytes is off


def test_the_byte_bound_evicts_the_least_recently_used() -> None:
    per_entry = 10 + 2 + ENTRY_OVERHEAD
    cache = ValueCache(per_entry * 2, 100)
    cache.put(record("/a", 10), b"a" * 10)
    cache.put(record("/b", 10), b"b" * 10)
    assert cache.get("/a") is not None  # /a is now the most recently used
    cache.put(record("/c", 10), b"c" * 10)
    assert cache.get("/b") is None
    assert cache.get("/a") is not None and cache.get("/c") is not None
    assert cache.stats.bytes == per_entry * 2


def test_invalidate_drops_whatever_version_is_held() -> None:
    cache = ValueCache(10_000, 100)
    cache.put(record("/a", 1), b"1")
    cache.put(record("/a", 2), b"22")
    assert cache.get("/a") == (record("/a", 2), b"22")
    cache.invalidate("/a")
    cache.invalidate("/absent")
    assert cache.get("/a") is None
    assert (cache.stats.bytes, cache.stats.entries) == (0, 0)


def test_a_read_through_fills_the_cache_while_its_ticket_holds() -> None:
    cache = ValueCache(10_000, 100)
    with cache.ticket("/a") as ticket:
        assert cache.fill(ticket, record("/a", 1), b"1")
    assert cache.get("/a") == (record("/a", 1), b"1")


def test_an_invalidation_during_a_read_through_stales_its_ticket() -> None:
    """Index reads may suspend: a write that commits and invalidates the key while a
    read-through is under way must keep the read-through's older value out of the cache."""
    cache = ValueCache(10_000, 100)
    with cache.ticket("/a") as ticket, cache.ticket("/a") as other:
        cache.invalidate("/a")  # a write's commit landed meanwhile
        assert ticket.stale and other.stale
        assert not cache.fill(ticket, record("/a", 1), b"old")
    assert cache.get("/a") is None
    with cache.ticket("/a") as later:  # a read-through begun after the write may fill
        assert cache.fill(later, record("/a", 2), b"22")
    assert cache.get("/a") == (record("/a", 2), b"22")


def test_only_the_ticket_key_is_staled_and_tickets_are_released() -> None:
    cache = ValueCache(10_000, 100)
    with cache.ticket("/a") as ticket:
        cache.invalidate("/b")
        cache.put(record("/a", 1), b"1")  # a write-through of the key itself
        assert not ticket.stale
    assert cache._tickets == {}
