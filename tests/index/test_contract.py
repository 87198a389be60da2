"""The index's contract (master/index/base.py), run against every engine: LevelDB in a
temporary directory, PostgreSQL on a real server started for the test process
(tests/pgserver.py), each test in a database of its own, and etcd on a real member started
for the test process (tests/etcdserver.py), each test under a key prefix of its own.

A behaviour that one engine has and another lacks fails here, so the rest of the master can
rely on the interface alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from etcdserver import required_etcd
from pgserver import required_server

from kittenfs.credentials import Credential
from kittenfs.master.index import HELD, Index, NoLongerPending, Raced, Space, open_index
from kittenfs.master.index.base import Entry, Kind
from kittenfs.placement import blob_id
from kittenfs.records import IndexRecord, WorkerInfo

Opener = Callable[[], Awaitable[Index]]
Contract = Callable[[Opener], Awaitable[None]]

ENGINES = ["leveldb", "postgresql", "etcd"]


def engine_spec(engine: str, tmp_path: Path) -> str:
    """Return the ``--index`` of a new, empty index on ``engine``."""
    if engine == "leveldb":
        return f"leveldb:{tmp_path / 'index'}"
    if engine == "etcd":
        return required_etcd().index()
    return required_server().database()


@pytest.fixture(params=ENGINES)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Return a coroutine function that opens the same new index each time it is called."""
    spec = engine_spec(request.param, tmp_path)
    return lambda: open_index(spec, tmp_path)


def contract(test: Contract) -> Callable[[Opener], None]:
    """Make an async contract test a test pytest runs, with a generous deadline."""

    def run(opener: Opener) -> None:
        asyncio.run(asyncio.wait_for(test(opener), 120))

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


def rec(key: str, version: str = "v1", replicas: tuple[int, ...] = (0, 1, 2)) -> IndexRecord:
    return IndexRecord(key, version, 5, "md5-" + version, replicas, 1000, 2000)


def pending(record: IndexRecord) -> IndexRecord:
    return dataclasses.replace(record, size=-1, md5="")


async def write(index: Index, record: IndexRecord, replaced: list[IndexRecord]) -> None:
    """Write ``record`` as the write path does: pending first, then the commit."""
    await index.begin_write(pending(record))
    await index.commit_write(record, replaced)


async def _garbage(index: Index) -> list[IndexRecord]:
    return sorted(
        (record for _, record in await index.garbage()),
        key=lambda r: (r.key, r.version, r.replicas),
    )


@contract
async def test_a_write_in_flight_then_committed(opener: Opener) -> None:
    """A write is pending (owned) until its commit makes it the live value, and the versions
    it replaces become garbage in the same commit."""
    index = await opener()
    old, new = rec("/k", "v1"), rec("/k", "v2")
    await write(index, old, [])
    await index.begin_write(pending(new))
    assert await index.owned(blob_id("/k", "v2"))
    assert await index.current("/k") == (Space.LIVE, old)
    await index.commit_write(new, [old])
    assert await index.current("/k") == (Space.LIVE, new)
    assert await index.get(Space.LIVE, "/k") == new
    assert await index.get(Space.UNLINKED, "/k") is None
    assert await _garbage(index) == [old]
    assert await index.owned(blob_id("/k", "v1"))  # its garbage
    assert not await index.owned(blob_id("/k", "v2"))  # committed: nothing pending
    await index.forget_garbage(old)
    assert await index.garbage() == []
    await index.close()


@contract
async def test_abandoned_write_becomes_garbage(opener: Opener) -> None:
    index = await opener()
    write = pending(rec("/k", "v1"))
    await index.begin_write(write)
    await index.abandon_write(write)
    assert await index.current("/k") is None
    assert await _garbage(index) == [write]
    [(entry, _)] = await index.garbage()
    assert await index.garbage_entry(entry) == write
    await index.forget(entry)
    assert await index.garbage_entry(entry) is None
    assert not await index.owned(blob_id("/k", "v1"))
    await index.close()


@contract
async def test_unlink_hides_and_a_write_revives(opener: Opener) -> None:
    """An unlinked record leaves the live space for the unlinked one; a write makes the key
    live again and drops the unlinked record; remove drops either into garbage."""
    index = await opener()
    first = rec("/k", "v1")
    await write(index, first, [])
    await index.unlink(first)
    assert await index.current("/k") == (Space.UNLINKED, first)
    assert await index.get(Space.LIVE, "/k") is None
    assert await index.keys(Space.LIVE, "", "", 10) == ([], "")
    assert await index.keys(Space.UNLINKED, "", "", 10) == (["/k"], "")
    second = rec("/k", "v2")
    await write(index, second, [first])
    assert await index.current("/k") == (Space.LIVE, second)
    assert await index.keys(Space.UNLINKED, "", "", 10) == ([], "")
    await index.unlink(second)
    await index.remove(second)
    assert await index.current("/k") is None
    assert await _garbage(index) == [first, second]
    await index.close()


@contract
async def test_update_replaces_in_place(opener: Opener) -> None:
    index = await opener()
    record = rec("/k")
    await write(index, record, [])
    fixed = dataclasses.replace(record, replicas=(0, 1, 3))
    await index.update(Space.LIVE, record, fixed)
    assert await index.current("/k") == (Space.LIVE, fixed)
    await index.close()


@contract
async def test_a_move_committed_and_abandoned(opener: Opener) -> None:
    """A move is in flight until committed; each dropped replica gets a garbage entry of
    its own, and an abandoned move's copies are garbage, one entry each."""
    index = await opener()
    record = rec("/k", "v1", (0, 1, 2))
    await write(index, record, [])
    move = dataclasses.replace(record, replicas=(3,))
    await index.begin_move(move)
    assert await index.move_in_flight(record) == (3,)
    assert await index.owned(blob_id("/k", "v1"))
    moved = dataclasses.replace(record, replicas=(0, 1, 3))
    await index.commit_move(Space.LIVE, record, moved, (2,))
    assert await index.move_in_flight(record) == ()
    assert await index.current("/k") == (Space.LIVE, moved)
    [(entry, dropped)] = await index.garbage()
    assert (dropped.key, dropped.version, dropped.replicas) == ("/k", "v1", (2,))
    assert dropped.modified_ms > 0  # stamped: the reaper's grace starts there
    await index.forget(entry)

    again = dataclasses.replace(moved, replicas=(4, 5))
    await index.begin_move(again)
    entries = await index.abandon_move(again)
    assert sorted(r.replicas for _, r in entries) == [(4,), (5,)]
    assert all(r.modified_ms == 0 for _, r in entries)
    for entry, record_there in entries:
        assert await index.garbage_entry(entry) == record_there
    assert await index.move_in_flight(moved) == ()
    assert await index.current("/k") == (Space.LIVE, moved)
    await index.close()


@contract
async def test_a_move_of_an_unlinked_value(opener: Opener) -> None:
    index = await opener()
    record = rec("/k")
    await write(index, record, [])
    await index.unlink(record)
    moved = dataclasses.replace(record, replicas=(0, 1, 3))
    await index.begin_move(dataclasses.replace(record, replicas=(3,)))
    await index.commit_move(Space.UNLINKED, record, moved, (2,))
    assert await index.current("/k") == (Space.UNLINKED, moved)
    await index.close()


@contract
async def test_own_writes_in_flight_are_left_alone_while_running(opener: Opener) -> None:
    """The pass that runs while masters serve takes only the dead masters' writes: this
    one's go on."""
    index = await opener()
    await index.beat("http://127.0.0.1:1")
    record = rec("/k")
    await index.begin_write(pending(record))
    assert await index.pending_to_garbage(15.0, at_start=False) == 0
    await index.commit_write(record, [])
    assert await index.current("/k") == (Space.LIVE, record)
    await index.close()


@contract
async def test_writes_in_flight_at_a_crash_become_garbage(opener: Opener) -> None:
    """What was pending when the master stopped is turned into garbage at the next start."""
    index = await opener()
    live = rec("/live")
    await write(index, live, [])
    await index.begin_write(pending(rec("/a", "v1")))
    await index.begin_move(dataclasses.replace(live, replicas=(7,)))
    await index.close()

    index = await opener()
    assert await index.pending_to_garbage(15.0) == 2
    assert await index.pending_to_garbage(15.0) == 0
    assert sorted((r.key, r.replicas) for r in await _garbage(index)) == [
        ("/a", (0, 1, 2)),
        ("/live", (7,)),
    ]
    assert await index.move_in_flight(live) == ()
    assert await index.current("/live") == (Space.LIVE, live)
    await index.close()


ORDERED = [
    "/a",
    "/a/",
    "/a/b",
    "/a/b/c",
    "/a/z",
    "/a0",
    "/a~",
    "/a\x7f",
    "/a\u00e9",
    "/a\uffff",
    "/a\U0001f600",
    "/a\U0010ffff",
    "/a\U0010ffffz",
    "/b",
    "/\u00e9t\u00e9",
]


@contract
async def test_keys_list_in_utf8_byte_order_by_pages(opener: Opener) -> None:
    """Keys list in the byte order of their UTF-8 form, under a prefix, from a start, a page
    at a time, the same on every engine."""
    index = await opener()
    for key in ORDERED:
        await write(index, rec(key), [])
    expected = sorted(ORDERED, key=lambda k: k.encode())
    assert [r.key async for r in index.records(Space.LIVE)] == expected

    collected, start = [], ""
    while True:
        page, start = await index.keys(Space.LIVE, "", start, 4)
        collected += page
        if not start:
            break
    assert collected == expected

    for prefix in ["/a", "/a/", "/a/b", "/a\U0010ffff", "/\u00e9", "/c", ""]:
        under = [k for k in expected if k.startswith(prefix)]
        assert (await index.keys(Space.LIVE, prefix, "", 100))[0] == under, prefix
        assert [r.key async for r in index.records(Space.LIVE, prefix)] == under, prefix
        for start in ["/a/b", "/a0", "/"]:
            want = [k for k in under if k.encode() >= start.encode()]
            assert [r.key async for r in index.records(Space.LIVE, prefix, start)] == want
    page, after = await index.keys(Space.LIVE, "/a/", "", 2)
    assert (page, after) == (["/a/", "/a/b"], "/a/b/c")
    await index.close()


@contract
async def test_whole_index_scans_cross_pages(opener: Opener) -> None:
    """``load`` writes a rebuilt index; ``all_current`` then gives every record once, live
    before unlinked, across many pages."""
    index = await opener()
    records = [rec(f"/bulk/{i:05d}") for i in range(2500)]
    workers = [WorkerInfo(f"w-{i}", i, f"http://127.0.0.1:{4000 + i}", 5) for i in range(3)]
    await index.load(records, workers, "c-rebuilt")
    await index.unlink(records[10])
    seen = [(space, r.key) async for space, r in index.all_current()]
    assert len(seen) == 2500
    assert seen[-1] == (Space.UNLINKED, "/bulk/00010")
    assert {space for space, _ in seen[:-1]} == {Space.LIVE}
    assert await index.cluster_id("c-other") == "c-rebuilt"
    assert await index.workers() == workers
    await index.close()


@contract
async def test_workers_and_their_indices(opener: Opener) -> None:
    """Worker indices are never given twice, not even after a worker is removed."""
    index = await opener()
    assert await index.next_worker() == 0
    for i in range(3):
        await index.save_worker(WorkerInfo(f"w-{i}", i, f"http://127.0.0.1:{4000 + i}", 5))
    assert await index.next_worker() == 3
    await index.set_draining(1, True)
    await index.set_draining(1, True)
    assert await index.draining() == {1}
    await index.remove_worker(2)
    await index.remove_worker(1)
    assert [w.index for w in await index.workers()] == [0]
    assert await index.draining() == set()
    assert await index.next_worker() == 3
    await index.set_draining(0, True)
    await index.set_draining(0, False)
    assert await index.draining() == set()
    await index.close()
    index = await opener()
    assert await index.next_worker() == 3
    await index.close()


@contract
async def test_credentials(opener: Opener) -> None:
    index = await opener()
    one = Credential("AK1", "admin", "", 0, 1, "aa")
    two = Credential("AK2", "read", "/p/", 99, 2, "bb")
    await index.save_credential(two)
    await index.save_credential(one)
    assert await index.credentials() == [one, two]
    assert await index.credential("AK2") == two
    assert await index.credential("nope") is None
    assert await index.delete_credential("AK2")
    assert not await index.delete_credential("AK2")
    assert await index.credentials() == [one]
    await index.close()


@contract
async def test_ids_are_stored_once_and_kept(opener: Opener) -> None:
    index = await opener()
    assert await index.cluster_id("c-first") == "c-first"
    assert await index.key_check("k-first") == "k-first"
    await index.close()
    index = await opener()
    assert await index.cluster_id("c-second") == "c-first"
    assert await index.key_check("k-second") == "k-first"
    await index.close()


@contract
async def test_settings_are_stored_replaced_and_dropped(opener: Opener) -> None:
    """What a master keeps in the index beside keys (the running job, say) survives it."""
    index = await opener()
    assert await index.setting("job") is None
    await index.put_setting("job", '{"id": "j1"}')
    await index.put_setting("job", '{"id": "j2", "é": 1}')
    await index.close()
    index = await opener()
    assert await index.setting("job") == '{"id": "j2", "é": 1}'
    await index.put_setting("job", None)
    assert await index.setting("job") is None
    await index.put_setting("job", None)  # dropping nothing is no error
    await index.close()


@contract
async def test_a_commit_over_a_changed_key_is_refused_whole(opener: Opener) -> None:
    """Every change of a key's record lands only over the record its caller read (another
    master may have changed it meanwhile): otherwise Raced, and nothing is written."""
    index = await opener()
    first, second, third = rec("/k", "v1"), rec("/k", "v2"), rec("/k", "v3")
    await write(index, first, [])
    await index.begin_write(pending(third))
    with pytest.raises(Raced):  # another write committed as if /k had no value
        await index.commit_write(third, [])
    await write(index, second, [first])
    with pytest.raises(Raced):  # over v1, which v2 replaced meanwhile
        await index.commit_write(third, [first])
    assert await index.current("/k") == (Space.LIVE, second)
    assert await index.move_in_flight(third) == ()
    assert await index.owned(blob_id("/k", "v3"))  # still pending: the caller may go on
    assert await _garbage(index) == [first]
    for stale in (
        index.remove(first),
        index.unlink(first),
        index.update(Space.LIVE, first, first),
    ):
        with pytest.raises(Raced):
            await stale
    assert await index.current("/k") == (Space.LIVE, second)
    await index.commit_write(third, [second])
    assert await index.current("/k") == (Space.LIVE, third)
    await index.close()


@contract
async def test_a_write_no_longer_pending_cannot_commit(opener: Opener) -> None:
    """A write whose pending record became garbage (its master taken for dead) is refused
    at its commit, so its copies, which the reaper deletes, are never named live."""
    index = await opener()
    record = rec("/k")
    await index.begin_write(pending(record))
    await index.abandon_write(pending(record))
    with pytest.raises(NoLongerPending):
        await index.commit_write(record, [])
    assert await index.current("/k") is None
    with pytest.raises(NoLongerPending):
        await index.commit_write(record, [])  # never pending at all
    await index.close()


@contract
async def test_a_move_over_a_changed_record_is_refused(opener: Opener) -> None:
    index = await opener()
    record = rec("/k", "v1", (0, 1, 2))
    await write(index, record, [])
    move = dataclasses.replace(record, replicas=(3,))
    moved = dataclasses.replace(record, replicas=(0, 1, 3))
    await index.begin_move(move)
    await index.unlink(record)  # same version, another space
    with pytest.raises(Raced):
        await index.commit_move(Space.LIVE, record, moved, (2,))
    fixed = dataclasses.replace(record, replicas=(0, 1, 4))
    await index.update(Space.UNLINKED, record, fixed)  # same version, other replicas
    with pytest.raises(Raced):
        await index.commit_move(Space.UNLINKED, record, moved, (2,))
    assert await index.current("/k") == (Space.UNLINKED, fixed)
    assert await index.move_in_flight(record) == (3,)
    await index.abandon_move(move)
    with pytest.raises(NoLongerPending):
        await index.commit_move(Space.UNLINKED, fixed, moved, (4,))
    assert await index.garbage() != []
    await index.close()


@contract
async def test_a_worker_index_is_given_once(opener: Opener) -> None:
    index = await opener()
    await index.save_worker(WorkerInfo("w-a", 0, "http://127.0.0.1:4000", 5))
    await index.save_worker(WorkerInfo("w-a", 0, "http://127.0.0.1:4009", 5))  # a new URL
    with pytest.raises(Raced):
        await index.save_worker(WorkerInfo("w-b", 0, "http://127.0.0.1:4001", 6))
    assert [(w.id, w.url) for w in await index.workers()] == [("w-a", "http://127.0.0.1:4009")]
    await index.close()


@contract
async def test_everything_survives_a_reopen(opener: Opener) -> None:
    index = await opener()
    live, gone = rec("/live"), rec("/gone")
    await write(index, live, [])
    await write(index, gone, [])
    await index.remove(gone)
    await index.close()
    index = await opener()
    assert await index.current("/live") == (Space.LIVE, live)
    assert await index.current("/gone") is None
    assert await _garbage(index) == [gone]
    await index.close()


def test_held_spaces_are_live_then_unlinked() -> None:
    assert HELD == (Space.LIVE, Space.UNLINKED)


async def _fill(index: Index) -> None:
    """Give ``index`` some of every kind of entry."""
    await index.cluster_id("c-1")
    await index.key_check("check")
    await index.save_credential(Credential("AK1", "admin", "", 0, 1, "aa"))
    for i in (0, 1, 2, 10):
        await index.save_worker(WorkerInfo(f"w-{i}", i, f"http://127.0.0.1:{4000 + i}", 5))
    await index.set_draining(10, True)
    for key in ORDERED:
        await write(index, rec(key, "v1"), [])
    await write(index, rec("/a", "v2"), [rec("/a", "v1")])
    await index.unlink(rec("/b"))
    await index.begin_write(pending(rec("/new", "v9")))
    record = rec("/a/b")
    await index.begin_move(dataclasses.replace(record, replicas=(10,)))
    await index.commit_move(
        Space.LIVE, record, dataclasses.replace(record, replicas=(0, 1, 10)), (2,)
    )
    await index.begin_move(dataclasses.replace(rec("/a0"), replicas=(9,)))


async def _exported(index: Index) -> list[Entry]:
    return [entry async for entry in index.export()]


def _without_stamps(entries: list[Entry]) -> list[Entry]:
    """The entries, with a moved-away replica's garbage stamp (the time of the move) cut."""
    return [
        e._replace(value=b"") if e.kind is Kind.GARBAGE and "@" in e.name else e for e in entries
    ]


def test_every_engine_exports_the_same_entries(tmp_path: Path) -> None:
    """The same operations give the same export, entry for entry and in the same order, on
    every engine: that is what lets ``kittenfs index copy`` check a copy."""

    async def export_of(engine: str) -> list[Entry]:
        index = await open_index(engine_spec(engine, tmp_path / engine), tmp_path)
        try:
            await _fill(index)
            return await _exported(index)
        finally:
            await index.close()

    leveldb, *others = (asyncio.run(export_of(engine)) for engine in ENGINES)
    assert {e.kind for e in leveldb} == set(Kind)
    for engine, other in zip(ENGINES[1:], others, strict=True):
        assert _without_stamps(leveldb) == _without_stamps(other), engine


@contract
async def test_an_import_of_an_export_is_the_same_index(opener: Opener) -> None:
    index = await opener()
    await _fill(index)
    entries = await _exported(index)
    await index.close()

    for engine in ENGINES:  # into an empty index of each engine, in batches
        with tempfile.TemporaryDirectory(prefix="kfs-import-") as directory:
            copy = await open_index(engine_spec(engine, Path(directory)), Path())
            try:
                await copy.import_entries(entries[:7])
                await copy.import_entries(entries[7:])
                assert await _exported(copy) == entries, engine
                assert await copy.current("/a") == (Space.LIVE, rec("/a", "v2"))
                assert await copy.move_in_flight(rec("/a0")) == (9,)
                assert await copy.next_worker() == 11
            finally:
                await copy.close()


@contract
async def test_a_change_over_moved_or_unlinked_copies_is_refused(opener: Opener) -> None:
    """The version alone does not make a record the one read: a move changes its replicas
    and an unlink its space, and a change made over either is refused (its garbage would
    name the wrong copies, or a removed key come back)."""
    index = await opener()
    record = rec("/k", "v1", (0, 1, 2))
    await write(index, record, [])
    moved = dataclasses.replace(record, replicas=(0, 1, 3))
    await index.update(Space.LIVE, record, moved)
    for stale in (
        index.remove(record),
        index.unlink(record),
        index.update(Space.LIVE, record, record),
        write(index, rec("/k", "v2"), [record]),
    ):
        with pytest.raises(Raced):
            await stale
    await index.unlink(moved)
    with pytest.raises(Raced):  # unlinked meanwhile: an update must not make it live again
        await index.update(Space.LIVE, moved, dataclasses.replace(moved, replicas=(4,)))
    assert await index.current("/k") == (Space.UNLINKED, moved)
    await index.begin_move(dataclasses.replace(moved, replicas=(5,)))
    with pytest.raises(Raced):  # a move of this version is in flight already
        await index.begin_move(dataclasses.replace(moved, replicas=(6,)))
    assert await index.move_in_flight(moved) == (5,)
    await index.close()
