"""The read path's decisions (master/reader.py) over a real index and the fake transport:
where a record comes from, which replicas serve, fallback, damage, and the cache rules."""

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from fakes import Blob, Core, chunks, open_core, run

from kittenfs.errors import NoGoodReplica, ReplicaUnavailable
from kittenfs.master.damage import Damage
from kittenfs.master.index import Index, LevelDBIndex, Space
from kittenfs.master.reader import Found, Reader
from kittenfs.placement import blob_id
from kittenfs.records import CopyState, IndexRecord

SMALL = b"small value"
LARGE = bytes(range(256)) * 4  # over the cache's value limit in these tests: streamed


class GatedIndex:
    """An index whose next ``get``, once ``armed``, reads the record and then suspends until
    ``gate`` is set: an index read that really awaits (as a network backend's would)."""

    def __init__(self, inner: LevelDBIndex) -> None:
        self.inner = inner
        self.armed = False
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get(self, space: Space, key: str) -> IndexRecord | None:
        record = await self.inner.get(space, key)
        if self.armed:
            self.armed = False
            self.entered.set()
            await self.gate.wait()
        return record


def reader_of(core: Core, index: Index | None = None) -> Reader:
    async def copy_state(worker: int, record: IndexRecord) -> CopyState:
        blob = blob_id(record.key, record.version)
        return await core.transport.copy_state(worker, blob, record.md5, False)

    damage = Damage(copy_state, lambda keys: None)
    return Reader(index or core.index, core.cache, core.membership, damage, core.transport)


async def put(core: Core, key: str, value: bytes) -> IndexRecord:
    result = await core.store.put(key, chunks(value), len(value))
    core.cache.invalidate(key)  # start each test's read from the index
    return result.record


async def settle() -> None:
    """Let background copy checks (damage.suspect) run."""
    for _ in range(10):
        await asyncio.sleep(0)


def test_find_takes_the_cache_first_then_the_index(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        reader = reader_of(core)
        record = await put(core, "/k", SMALL)
        assert await reader.find("/k") == Found(record)
        assert await reader.find("/absent") is None
        core.cache.put(record, SMALL)
        assert await reader.find("/k") == Found(record, SMALL)
        await core.index.close()

    run(main())


def test_a_read_through_serves_a_good_copy_and_marks_the_bad_ones(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        reader = reader_of(core)
        record = await put(core, "/k", SMALL)
        blob = blob_id(record.key, record.version)
        core.transport.held(0)[blob] = Blob("/k", record.version, b"rotten bytes")
        del core.transport.held(1)[blob]
        core.transport.fail.add(("read", 2))
        core.transport.unreachable.add(2)
        found = await reader.find("/k")
        assert found is not None
        with pytest.raises(NoGoodReplica):
            await reader.value(found)
        assert reader.damage.of(record) == {0, 1}  # corrupt, missing
        assert not core.membership.is_up(2)  # unreachable: down until its next heartbeat
        core.transport.fail.clear()
        core.membership.heartbeat(core.membership.workers[2].info.id, {})
        assert await reader.value(found) == SMALL
        assert await reader.find("/k") == Found(record, SMALL)  # kept in the cache
        assert core.cache.stats.misses == 2
        await core.index.close()

    run(main())


def test_a_read_through_never_caches_a_version_replaced_meanwhile(tmp_path: Path) -> None:
    """The cache rule with an index read that suspends: a write commits (and invalidates)
    while the read-through checks the index; the older value must stay out of the cache."""

    async def main() -> None:
        core = await open_core(tmp_path)
        index = GatedIndex(core.index)
        reader = reader_of(core, index)
        old = await put(core, "/k", SMALL)
        found = await reader.find("/k")
        assert found == Found(old)
        index.armed = True
        reading = asyncio.create_task(reader.value(found))
        await index.entered.wait()  # the check has read ``old`` and is suspended
        newer = (await core.store.put("/k", chunks(b"newer"), 5)).record
        assert core.cache.get("/k") == (newer, b"newer")  # the write-through
        index.gate.set()
        assert await reading == SMALL  # this read still answers what it found
        assert core.cache.get("/k") == (newer, b"newer")  # not the older version
        await core.index.close()

    run(main())


def test_candidates_skip_failed_and_damaged_replicas(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        reader = reader_of(core)
        record = await put(core, "/k", SMALL)
        assert sorted(reader.candidates(record)) == [0, 1, 2]
        assert sorted(reader.candidates(record, (0,))) == [1, 2]
        reader.damage.mark(record, 1)
        assert reader.candidates(record, (0,)) == [2, 1]  # the damaged one last
        assert reader.choose(record, (0,)) == 2  # never sent to it while another is good
        assert reader.candidates(record, (0, 2)) == [1]  # damaged, but the only one left
        with pytest.raises(NoGoodReplica):
            reader.candidates(record, (0, 1, 2))
        for worker in (0, 1, 2):
            core.membership.suspect(worker, "test")
        with pytest.raises(ReplicaUnavailable):
            reader.candidates(record)
        await core.index.close()

    run(main())


def test_a_failed_replica_named_by_a_fallback_is_checked(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        reader = reader_of(core)
        record = await put(core, "/k", SMALL)
        del core.transport.held(1)[blob_id(record.key, record.version)]
        await reader.find("/k", (0, 1))
        await settle()
        assert reader.damage.of(record) == {1}  # 0's copy is good: only 1 is marked
        await core.index.close()

    run(main())


async def stream(reader: Reader, record: IndexRecord, replicas: list[int]) -> bytes:
    return b"".join([c async for c in reader.stream(record, 0, record.size - 1, replicas)])


def test_a_stream_goes_on_from_the_next_replica_where_one_stopped(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        reader = reader_of(core)
        record = await put(core, "/big", LARGE)
        core.transport.cut.update({0: 10, 1: 500})
        assert await stream(reader, record, [0, 1, 2]) == LARGE
        assert core.membership.is_up(0) and core.membership.is_up(1)  # cut: not down
        ranged = [c async for c in reader.stream(record, 100, 199, [1])]
        assert b"".join(ranged) == LARGE[100:200]
        await core.index.close()

    run(main())


def test_a_stream_is_stitched_from_damaged_copies_too(tmp_path: Path) -> None:
    """Every copy stops somewhere and one is already known damaged: its good part is still
    needed, so a stream over the candidates serves the value whole."""

    async def main() -> None:
        core = await open_core(tmp_path)
        reader = reader_of(core)
        record = await put(core, "/big", LARGE)
        core.transport.cut.update({0: 10, 2: 20})  # only 1 holds the bytes from 20 on
        reader.damage.mark(record, 1)
        assert await stream(reader, record, reader.candidates(record)) == LARGE
        await core.index.close()

    run(main())


def test_a_stream_fails_before_its_first_byte_or_is_cut(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        reader = reader_of(core)
        record = await put(core, "/big", LARGE)
        blob = blob_id(record.key, record.version)
        for worker in (0, 1):
            del core.transport.held(worker)[blob]
        core.transport.fail.add(("read", 2))
        with pytest.raises(NoGoodReplica):
            await stream(reader, record, [0, 1, 2])
        assert reader.damage.of(record) == {0, 1}
        core.transport.fail.clear()
        core.transport.cut[2] = 40
        given: list[bytes] = []
        with pytest.raises(NoGoodReplica):
            async for chunk in reader.stream(record, 0, record.size - 1, [2]):
                given.append(chunk)
        assert b"".join(given) == LARGE[:40]  # the caller cuts the response there
        await core.index.close()

    run(main())


def test_whole_values_are_the_small_ones_without_a_range(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        core.cache.max_value = 512
        reader = reader_of(core)
        small, large = await put(core, "/s", SMALL), await put(core, "/l", LARGE)
        assert reader.whole_value(Found(small), ranged=False)
        assert not reader.whole_value(Found(small), ranged=True)
        assert not reader.whole_value(Found(large), ranged=False)
        assert hashlib.md5(LARGE, usedforsecurity=False).hexdigest() == large.md5
        await core.index.close()

    run(main())
