"""SyncedDB: durable, group-committed LevelDB writes on a real plyvel database (tmp_path)."""

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kittenfs import ldb
from kittenfs.ldb import SyncedDB, _after_prefix

T = TypeVar("T")


def run(tmp_path: Path, body: Callable[[SyncedDB], Awaitable[T]]) -> T:
    async def main() -> T:
        db = SyncedDB(str(tmp_path / "db"))
        try:
            return await asyncio.wait_for(body(db), 5)
        finally:
            await db.close()

    return asyncio.run(main())


def count_commits(db: SyncedDB) -> list[int]:
    """Wrap this instance's ``_commit``; return a list that gets each batch's op count."""
    sizes: list[int] = []
    original = db._commit

    def counting(batch: Any) -> None:
        sizes.append(len(batch))
        original(batch)

    db._commit = counting  # type: ignore[method-assign]
    return sizes


# --- writes -------------------------------------------------------------------------------


def test_write_is_visible_after_await(tmp_path: Path) -> None:
    async def body(db: SyncedDB) -> None:
        assert db.get(b"k") is None
        await db.write({b"k": b"v", b"k2": b"v2"})
        assert db.get(b"k") == b"v" and db.get(b"k2") == b"v2"
        assert db.db.get(b"k") == b"v"
        await db.write(deletes=[b"k"])
        assert db.get(b"k") is None and db.get(b"k2") == b"v2"
        await db.write({b"k2": b"new"})
        assert db.get(b"k2") == b"new"

    run(tmp_path, body)


def test_write_is_not_applied_before_await(tmp_path: Path) -> None:
    async def body(db: SyncedDB) -> None:
        task = asyncio.ensure_future(db.write({b"k": b"v"}))
        assert db.get(b"k") is None  # queued, not yet committed
        await task
        assert db.get(b"k") == b"v"

    run(tmp_path, body)


def test_puts_and_deletes_in_one_write(tmp_path: Path) -> None:
    async def body(db: SyncedDB) -> None:
        await db.write({b"a": b"1", b"b": b"2"})
        await db.write({b"c": b"3", b"b": b"22"}, deletes=[b"a", b"b"])
        # Deletes are applied before puts in the same write: "b" is replaced, not removed.
        assert (db.get(b"a"), db.get(b"b"), db.get(b"c")) == (None, b"22", b"3")
        await db.write(deletes=(key for key in [b"c"]))  # any iterable of keys
        assert db.get(b"c") is None
        await db.write()  # an empty write is fine
        await db.write(deletes=[b"never-there"])

    run(tmp_path, body)


def test_writes_are_durable_across_reopen(tmp_path: Path) -> None:
    async def write(db: SyncedDB) -> None:
        await db.write({b"x": b"1", b"y": b"2"})
        await db.write(deletes=[b"y"])

    async def read(db: SyncedDB) -> None:
        assert db.get(b"x") == b"1" and db.get(b"y") is None

    run(tmp_path, write)
    run(tmp_path, read)


def test_close_waits_for_queued_writes(tmp_path: Path) -> None:
    async def main() -> None:
        db = SyncedDB(str(tmp_path / "db"))
        tasks = [asyncio.ensure_future(db.write({b"k%d" % i: b"v"})) for i in range(20)]
        await asyncio.sleep(0)  # the writes are queued
        await db.close()
        assert all(task.done() and task.exception() is None for task in tasks)

    async def read(db: SyncedDB) -> None:
        assert [db.get(b"k%d" % i) for i in range(20)] == [b"v"] * 20

    asyncio.run(main())
    run(tmp_path, read)


def test_concurrent_writes_are_group_committed(tmp_path: Path) -> None:
    writers = 100

    async def body(db: SyncedDB) -> list[int]:
        commits = count_commits(db)

        async def writer(i: int) -> None:
            await db.write({b"w:%03d" % i: b"%d" % i}, deletes=[b"gone:%03d" % i])

        await db.write({b"gone:%03d" % i: b"x" for i in range(writers)})
        commits.clear()
        await asyncio.gather(*(writer(i) for i in range(writers)))
        assert [db.get(b"w:%03d" % i) for i in range(writers)] == [
            b"%d" % i for i in range(writers)
        ]
        assert list(db.scan(b"gone:")) == []
        return commits

    commits = run(tmp_path, body)
    assert sum(commits) == writers  # every write was applied, each exactly once
    assert len(commits) < writers  # ...in fewer fsyncs than writes
    assert len(commits) <= 2  # all arrived while the first sync was under way


def test_writes_arriving_during_a_sync_share_the_next_batch(tmp_path: Path) -> None:
    async def body(db: SyncedDB) -> list[int]:
        commits = count_commits(db)
        first = asyncio.ensure_future(db.write({b"first": b"1"}))
        await asyncio.sleep(0)  # the first write's sync starts
        rest = [asyncio.ensure_future(db.write({b"r%d" % i: b"1"})) for i in range(30)]
        await asyncio.gather(first, *rest)
        return commits

    commits = run(tmp_path, body)
    assert commits == [1, 30]


def test_an_inline_commit_waits_for_writes_on_their_way(tmp_path: Path) -> None:
    """Writes that reach ``write`` a loop iteration or two after the first (a request whose
    bytes were already in its socket) join its inline commit, instead of each waiting for
    an fsync of its own."""

    async def body(db: SyncedDB) -> list[int]:
        await db.write({b"warm": b"1"})  # measured: commits now run on the loop
        db.commit_seconds = 0.0
        commits = count_commits(db)

        async def later(i: int, rounds: int) -> None:
            for _ in range(rounds):
                await asyncio.sleep(0)  # reaches write after ``rounds`` loop iterations
            await db.write({b"l%d" % i: b"1"})

        await asyncio.gather(*(later(i, i % 3) for i in range(12)))
        return commits

    assert run(tmp_path, body) == [12]


def test_sequential_writes_commit_one_by_one(tmp_path: Path) -> None:
    async def body(db: SyncedDB) -> list[int]:
        commits = count_commits(db)
        for i in range(5):
            await db.write({b"s%d" % i: b"1"})
        return commits

    assert run(tmp_path, body) == [1] * 5


def test_commits_run_on_the_loop_while_fast_and_in_the_thread_once_slow(
    tmp_path: Path,
) -> None:
    """The first commit runs in the commit thread (nothing is measured yet); fast ones then
    run on the event loop; one that took long sends the next ones back to the thread."""

    async def body(db: SyncedDB) -> list[bool]:
        on_loop: list[bool] = []
        slow = False
        original = db._write_synced

        def watched(batch: Any) -> None:
            on_loop.append(threading.get_ident() == threading.main_thread().ident)
            if slow:
                time.sleep(0.02)  # a disk that takes 20 ms to sync
            original(batch)

        db._write_synced = watched  # type: ignore[method-assign]
        await db.write({b"first": b"1"})
        assert 0 < db.commit_seconds < float("inf")
        db.commit_seconds = 0.0  # as if the disk synced in no time
        await db.write({b"fast": b"1"})
        slow = True
        db.commit_seconds = 0.0  # whatever the last commit took on a busy machine
        await db.write({b"slow": b"1"})  # still on the loop: it was expected fast
        assert db.commit_seconds > ldb.INLINE_BELOW
        slow = False
        await db.write({b"after": b"1"})
        assert all(db.get(k) == b"1" for k in (b"first", b"fast", b"slow", b"after"))
        return on_loop

    assert run(tmp_path, body) == [False, True, True, False]


def test_later_write_wins_within_a_batch(tmp_path: Path) -> None:
    async def body(db: SyncedDB) -> None:
        commits = count_commits(db)
        await asyncio.gather(
            db.write({b"k": b"1"}),
            db.write({b"k": b"2"}),
            db.write(deletes=[b"k"]),
            db.write({b"k": b"4"}),
        )
        assert commits == [4]
        assert db.get(b"k") == b"4"

    run(tmp_path, body)


def test_a_failed_commit_fails_every_waiter_and_the_next_write_works(tmp_path: Path) -> None:
    async def body(db: SyncedDB) -> None:
        original = db._commit
        failures = 1

        def flaky(batch: Any) -> None:
            nonlocal failures
            if failures:
                failures -= 1
                raise OSError("disk on fire")
            original(batch)

        db._commit = flaky  # type: ignore[method-assign]
        results = await asyncio.gather(
            *(db.write({b"f%d" % i: b"1"}) for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(result, OSError) for result in results)
        assert all(db.get(b"f%d" % i) is None for i in range(5))  # nothing half-applied
        await db.write({b"after": b"ok"})
        assert db.get(b"after") == b"ok"

    run(tmp_path, body)


def test_a_cancelled_waiter_does_not_break_the_batch(tmp_path: Path) -> None:
    async def body(db: SyncedDB) -> None:
        doomed = asyncio.ensure_future(db.write({b"doomed": b"1"}))
        kept = asyncio.ensure_future(db.write({b"kept": b"1"}))
        await asyncio.sleep(0)
        doomed.cancel()
        await kept
        assert db.get(b"kept") == b"1"
        # Cancelling the wait does not withdraw a write already handed to LevelDB.
        assert db.get(b"doomed") == b"1"

    run(tmp_path, body)


# --- scan ---------------------------------------------------------------------------------

KEYS = [
    b"",
    b"a",
    b"a\x00",
    b"a\xff",
    b"ab",
    b"ab\xff",
    b"ac",
    b"b",
    b"m:1",
    b"m:2",
    b"m:3",
    b"m;",
    b"n",
    b"\xfe",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
    b"\xff\xff\xff",
]


def scan_keys(tmp_path: Path, prefix: bytes, start: bytes = b"") -> list[bytes]:
    async def body(db: SyncedDB) -> list[bytes]:
        await db.write({key: b"v:" + key for key in KEYS if key})
        out = []
        for key, val in db.scan(prefix, start):
            assert val == b"v:" + key
            out.append(key)
        keys_only = list(db.scan(prefix, start, include_value=False))
        assert keys_only == out
        return out

    return run(tmp_path, body)


def expected(prefix: bytes, start: bytes = b"") -> list[bytes]:
    return sorted(k for k in KEYS if k and k.startswith(prefix) and k >= start)


@pytest.mark.parametrize(
    "prefix",
    [
        b"",
        b"a",
        b"ab",
        b"m:",
        b"m",
        b"b",
        b"z",
        b"\xfe",
        b"\xff",
        b"\xff\xff",
        b"a\xff",
        b"ab\xff",
        b"m:2",
    ],
)
def test_scan_respects_prefix(tmp_path: Path, prefix: bytes) -> None:
    assert scan_keys(tmp_path, prefix) == expected(prefix)


def test_scan_prefix_ending_in_ff(tmp_path: Path) -> None:
    assert scan_keys(tmp_path, b"\xff") == [b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff"]
    assert scan_keys(tmp_path, b"\xff\xff") == [b"\xff\xff", b"\xff\xff\xff"]
    assert scan_keys(tmp_path, b"a\xff") == [b"a\xff"]  # not "ab", "ac" or "b"


@pytest.mark.parametrize(
    ("prefix", "start"),
    [
        (b"m:", b"m:2"),  # start on a key: included
        (b"m:", b"m:15"),  # start between keys
        (b"m:", b"m:4"),  # start after every key under the prefix
        (b"m:", b"a"),  # start before the prefix: the prefix wins
        (b"m:", b"z"),  # start after the prefix range
        (b"a", b"a\x00"),
        (b"a", b"ab\xff"),
        (b"\xff", b"\xff\x01"),
        (b"\xff", b"\xff\xff\xff"),
        (b"", b"n"),
    ],
)
def test_scan_respects_start(tmp_path: Path, prefix: bytes, start: bytes) -> None:
    assert scan_keys(tmp_path, prefix, start) == expected(prefix, start)


def test_scan_sees_later_writes(tmp_path: Path) -> None:
    async def body(db: SyncedDB) -> None:
        assert list(db.scan(b"p:")) == []
        await db.write({b"p:2": b"b", b"p:1": b"a", b"q": b"c"})
        assert list(db.scan(b"p:")) == [(b"p:1", b"a"), (b"p:2", b"b")]

    run(tmp_path, body)


@pytest.mark.parametrize(
    ("prefix", "after"),
    [
        (b"", None),
        (b"a", b"b"),
        (b"m:", b"m;"),
        (b"a\xff", b"b"),
        (b"a\xff\xff", b"b"),
        (b"\xff", None),
        (b"\xff\xff", None),
        (b"\x00", b"\x01"),
        (b"a\xfe", b"a\xff"),
    ],
)
def test_after_prefix(prefix: bytes, after: bytes | None) -> None:
    assert _after_prefix(prefix) == after
