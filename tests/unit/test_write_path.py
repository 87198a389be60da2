"""The write path (master/write_path.py) with a fake transport and a real index: each step of
a PUT failed in turn leaves nothing acknowledged missing, nothing half-visible, and every
leftover copy owned by an index entry that the reaper cleans."""

import hashlib
import os
from pathlib import Path

import pytest
from fakes import Core, chunks, open_core, run

from kittenfs.errors import (
    IndexUnavailable,
    InvalidRequest,
    MetadataTooLarge,
    NotEnoughWorkers,
    NotFound,
    PreconditionFailed,
    ReplicaUnavailable,
    TooLarge,
)
from kittenfs.master.index import Space
from kittenfs.master.write_path import BATCHED_VALUE_MAX
from kittenfs.placement import blob_id
from kittenfs.records import MAX_META_BYTES, IndexRecord, encode

SMALL = b"small value"
LARGE = os.urandom(BATCHED_VALUE_MAX * 3 + 17)


class Boom(Exception):
    """An index batch that did not land."""


async def referenced(core: Core) -> set[tuple[int, str]]:
    """The copies the index names as current: (worker, blob)."""
    named: set[tuple[int, str]] = set()
    for space in (Space.LIVE, Space.UNLINKED):
        async for record in core.index.records(space):
            blob = blob_id(record.key, record.version)
            named.update((worker, blob) for worker in record.replicas)
    return named


async def assert_accounted(core: Core) -> None:
    """Every copy on a worker is current, or owned by a pending or garbage entry."""
    for worker, blob in core.transport.all_blobs():
        assert (worker, blob) in await referenced(core) or await core.index.owned(blob), (
            worker,
            blob,
        )


async def heal_and_reap(core: Core) -> None:
    """Let every worker answer again, run the reaper, and check only current copies remain."""
    core.transport.fail.clear()
    await core.reaper.reap_once()
    assert core.transport.all_blobs() == await referenced(core)
    assert await core.index.garbage() == []
    assert list(core.index.db.scan(b"p:")) == []


async def put(core: Core, key: str, value: bytes) -> IndexRecord:
    result = await core.store.put(key, chunks(value), len(value))
    return result.record


def test_a_put_is_live_on_every_replica(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        for key, value in (("/small", SMALL), ("/large", LARGE)):
            result = await core.store.put(key, chunks(value), len(value))
            assert result.created
            assert await core.index.get(Space.LIVE, key) == result.record
            assert core.transport.holders(result.record) == set(result.record.replicas)
            assert len(result.record.replicas) == 3
        assert list(core.index.db.scan(b"p:")) == []
        await core.index.close()

    run(main())


STEPS = ["begin_write", "replica 0", "replica 1", "replica 2", "commit"]


@pytest.mark.parametrize("value", [SMALL, LARGE], ids=["batched", "streamed"])
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
def test_a_failed_step_leaves_the_old_value_and_a_cleanup_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: bytes, step: str, overwrite: bool
) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        old = await put(core, "/k", b"old value") if overwrite else None
        if step.startswith("replica"):
            worker = core.membership.choose_replicas("/k")[int(step.split()[1])]
            op = "put_small" if len(value) <= BATCHED_VALUE_MAX else "upload"
            core.transport.fail.add((op, worker))
            expected: type[Exception] = ReplicaUnavailable
        else:
            method = "begin_write" if step == "begin_write" else "commit_write"

            async def boom(*_: object) -> None:
                raise Boom(step)

            monkeypatch.setattr(core.index, method, boom)
            expected = Boom
        with pytest.raises(expected):
            await put(core, "/k", value)
        # Nothing half-visible: the key is as it was, and its old copies are all in place.
        assert await core.index.get(Space.LIVE, "/k") == old
        if old is not None:
            assert core.transport.holders(old) == set(old.replicas)
        assert core.cache.get("/k") is None or core.cache.get("/k") == (old, b"old value")
        await assert_accounted(core)
        monkeypatch.undo()
        await heal_and_reap(core)
        await core.index.close()

    run(main())


def test_a_failed_write_whose_cleanup_meets_no_index_is_cleaned_up_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit fails and so does turning the pending record into garbage (the index's
    engine is away): the client gets the commit's error, and a later pass of the reaper
    abandons the write, once the engine is back."""

    async def main() -> None:
        core = await open_core(tmp_path)

        async def away(*_: object) -> None:
            raise IndexUnavailable("the index at postgresql://x cannot be reached")

        monkeypatch.setattr(core.index, "commit_write", away)
        monkeypatch.setattr(core.index, "abandon_write", away)
        with pytest.raises(IndexUnavailable):
            await put(core, "/k", SMALL)
        monkeypatch.undo()
        assert core.transport.all_blobs(), "its copies wait for the engine"
        assert await core.reaper.abandon_again() == 0
        assert await core.index.get(Space.LIVE, "/k") is None
        await heal_and_reap(core)
        await core.index.close()

    run(main())


def test_copies_a_worker_would_not_delete_stay_garbage_until_it_does(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        first, _, third = core.membership.choose_replicas("/k")
        core.transport.fail.update({("put_small", third), ("delete", first)})
        with pytest.raises(ReplicaUnavailable):
            await put(core, "/k", SMALL)
        assert await core.index.get(Space.LIVE, "/k") is None
        assert core.transport.all_blobs(), "the copy on the first worker is still there"
        assert len(await core.index.garbage()) == 1
        await assert_accounted(core)
        assert await core.reaper.reap_once() == 0  # still refused
        await heal_and_reap(core)
        await core.index.close()

    run(main())


def test_a_write_cut_off_by_a_crash_becomes_garbage_at_start(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        pending = IndexRecord("/k", "17979cfe3d85cd1501020304", -1, "", (0, 1, 2), 1, 1)
        await core.index.begin_write(pending)
        for worker in pending.replicas:  # the copies landed; the master died before commit
            await core.transport.put_small(worker, blob_id("/k", pending.version), "/k", "v", b"x")
        await assert_accounted(core)
        await core.reaper.recover(15.0)
        assert await core.index.get(Space.LIVE, "/k") is None
        await heal_and_reap(core)
        await core.index.close()

    run(main())


def test_an_overwrite_turns_the_old_version_into_garbage(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        old = await put(core, "/k", b"one")
        result = await core.store.put("/k", chunks(b"two"), 3)
        assert not result.created
        assert core.transport.holders(old) == set(old.replicas)  # kept for the grace
        await heal_and_reap(core)
        assert core.transport.holders(old) == set()
        assert core.transport.holders(result.record) == set(result.record.replicas)
        await core.index.close()

    run(main())


def test_refusals_change_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path, max_value_bytes=1000)
        await put(core, "/k", b"one")
        before = core.transport.all_blobs()
        with pytest.raises(PreconditionFailed):
            await core.store.put("/k", chunks(b"two"), 3, if_none_match="*")
        seen: list[IndexRecord | None] = []

        def refuse(live: IndexRecord | None) -> None:
            seen.append(live)
            raise PreconditionFailed("the caller's condition does not hold")

        with pytest.raises(PreconditionFailed):
            await core.store.put("/k", chunks(b"two"), 3, precondition=refuse)
        assert [r.md5 if r else None for r in seen] == [hashlib.md5(b"one").hexdigest()]
        with pytest.raises(TooLarge):
            await core.store.put("/big", chunks(b"x" * 1001), 1001)
        with pytest.raises(TooLarge):  # no Content-Length: counted as it streams
            await core.store.put("/big", chunks(b"x" * 1001, 100), None)
        with pytest.raises(InvalidRequest):
            await core.store.put("/short", chunks(b"abc"), 10)
        with pytest.raises(NotFound):
            await core.store.delete("/absent")
        with pytest.raises(NotFound):
            await core.store.unlink("/absent")
        assert await core.index.get(Space.LIVE, "/big") is None
        await heal_and_reap(core)
        assert core.transport.all_blobs() == before
        await core.index.close()

    run(main())


def test_too_few_workers_up_refuses_before_anything_is_written(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path, workers=3, replicas=3)
        core.membership.suspect(1, "test")
        with pytest.raises(NotEnoughWorkers):
            await put(core, "/k", SMALL)
        assert core.transport.calls == []
        assert list(core.index.db.scan(b"p:")) == []
        await core.index.close()

    run(main())


def test_delete_unlink_and_clear(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        a = await put(core, "/a", b"a")
        await put(core, "/b", b"b")
        await core.store.unlink("/a")
        assert await core.index.get(Space.LIVE, "/a") is None
        assert await core.index.get(Space.UNLINKED, "/a") == a
        assert core.transport.holders(a) == set(a.replicas)  # unlinked keeps its bytes
        await core.store.delete("/a")
        assert await core.index.current("/a") is None  # gone from the index at once
        assert core.transport.holders(a) == set(a.replicas)  # its copies: the reaper's now
        assert await core.reaper.delete_queued() == 1
        assert core.transport.holders(a) == set()
        assert await core.store.clear() == 1
        await core.reaper.delete_queued()
        assert core.transport.all_blobs() == set()
        await heal_and_reap(core)
        await core.index.close()

    run(main())


def test_a_garbage_entry_whose_copies_are_gone_is_cleaned_again(tmp_path: Path) -> None:
    """A crash between the reaper's deletes and its forget leaves a garbage entry whose
    copies are gone: the reaper deletes them again (gone counts as deleted) and forgets it,
    and the key written again meanwhile keeps its new copies."""

    async def main() -> None:
        core = await open_core(tmp_path)
        await put(core, "/again", b"old")
        await core.store.delete("/again")
        [(entry, old)] = await core.index.garbage()
        assert await core.reaper.delete_queued() == 1
        assert await core.index.garbage() == []
        new = await put(core, "/again", b"new")
        await core.index.db.write({entry: encode(old)})  # as if the forget never landed
        assert await core.index.garbage() == [(entry, old)]
        assert await core.reaper.reap_once() == 1
        assert core.transport.holders(new) == set(new.replicas)
        await heal_and_reap(core)
        await core.index.close()

    run(main())


def test_an_unreachable_replica_is_marked_down(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        worker = core.membership.choose_replicas("/k")[0]
        core.transport.fail.add(("upload", worker))
        core.transport.unreachable.add(worker)
        with pytest.raises(ReplicaUnavailable):
            await put(core, "/k", LARGE)
        assert not core.membership.is_up(worker)
        await core.index.close()

    run(main())


# --- a value's metadata goes to every replica ---------------------------------------------

META = (("content-type", "text/plain"), ("x-amz-meta-colour", "ginger"))


def checksum(size: int, md5: str) -> tuple[tuple[str, str], ...]:
    """A ``finish`` as the S3 API's: metadata known once the body has been counted."""
    return (("x-amz-checksum-test", f"{size}:{md5}"),)


@pytest.mark.parametrize("value", [SMALL, LARGE, b""], ids=["batched", "streamed", "empty"])
@pytest.mark.parametrize("known", [True, False], ids=["known-size", "no-content-length"])
def test_every_replica_keeps_the_values_metadata(tmp_path: Path, value: bytes, known: bool) -> None:
    """Metadata given with the PUT and what ``finish`` adds reach every replica with the
    value's exact bytes (a streamed value carries them in a frame after its bytes)."""

    async def main() -> None:
        core = await open_core(tmp_path)
        size = len(value) if known else None
        result = await core.store.put("/m", chunks(value, 7000), size, None, META, checksum)
        md5 = hashlib.md5(value).hexdigest()
        expected = (*META, ("x-amz-checksum-test", f"{len(value)}:{md5}"))
        assert result.record.meta == expected
        blob = blob_id("/m", result.record.version)
        for worker in result.record.replicas:
            held = core.transport.held(worker)[blob]
            assert (held.value, held.meta) == (value, expected)
        await core.index.close()

    run(main())


def test_a_value_without_metadata_is_sent_as_before(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path)
        for value in (SMALL, LARGE):
            record = await put(core, "/plain", value)
            for worker in record.replicas:
                held = core.transport.held(worker)[blob_id("/plain", record.version)]
                assert (held.value, held.meta) == (value, ())
        await core.index.close()

    run(main())


@pytest.mark.parametrize("value", [SMALL, LARGE], ids=["batched", "streamed"])
def test_metadata_over_the_limit_is_refused_and_leaves_nothing(
    tmp_path: Path, value: bytes
) -> None:
    huge = (("x-amz-meta-big", "x" * MAX_META_BYTES),)

    async def main() -> None:
        core = await open_core(tmp_path)
        with pytest.raises(MetadataTooLarge, match="over the limit"):
            await core.store.put("/huge", chunks(value), len(value), None, huge)
        assert core.transport.calls == []  # refused before anything was written
        with pytest.raises(MetadataTooLarge):  # what finish adds counts too
            await core.store.put("/huge", chunks(value), len(value), None, (), lambda *_: huge)
        assert await core.index.get(Space.LIVE, "/huge") is None
        await heal_and_reap(core)
        assert core.transport.all_blobs() == set()
        await core.index.close()

    run(main())


@pytest.mark.parametrize("value", [SMALL, LARGE], ids=["batched", "streamed"])
def test_a_finish_that_refuses_the_body_leaves_nothing(tmp_path: Path, value: bytes) -> None:
    """The S3 API's BadDigest: raised before the replicas are told the body ended."""

    def refuse(size: int, md5: str) -> tuple[tuple[str, str], ...]:
        raise Boom("the checksum does not match")

    async def main() -> None:
        core = await open_core(tmp_path)
        with pytest.raises(Boom):
            await core.store.put("/bad", chunks(value), len(value), None, META, refuse)
        with pytest.raises(InvalidRequest, match="Content-Length"):
            await core.store.put("/short", chunks(value), len(value) + 1, None, META, checksum)
        assert await core.index.get(Space.LIVE, "/bad") is None
        await assert_accounted(core)
        await heal_and_reap(core)
        assert core.transport.all_blobs() == set()
        await core.index.close()

    run(main())
