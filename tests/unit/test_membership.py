"""Membership (master/membership.py) over a real index in a tmp dir."""

from pathlib import Path

import pytest
from fakes import run

from kittenfs.errors import NotEnoughWorkers, NotFound, StateConflict
from kittenfs.master.index import LevelDBIndex
from kittenfs.master.membership import Membership
from kittenfs.placement import rank
from kittenfs.records import IndexRecord


async def registered(path: Path, count: int, replicas: int = 3) -> Membership:
    membership = await Membership.open(LevelDBIndex(str(path / "index")), replicas, down_after=60.0)
    for i in range(count):
        info = await membership.register(f"w-{i:012x}", f"http://h:{i}", None)
        assert info.index == i
    return membership


def test_indices_are_given_in_order_and_kept(tmp_path: Path) -> None:
    async def main() -> None:
        membership = await registered(tmp_path, 3)
        again = await membership.register("w-000000000001", "http://h:1", None)
        assert again.index == 1
        moved = await membership.register("w-000000000001", "http://h:9", None)
        assert (moved.index, moved.url) == (1, "http://h:9")
        with pytest.raises(StateConflict):
            await membership.register("w-00000000000a", "http://h:10", 2)
        await membership.index.close()
        reopened = await Membership.open(LevelDBIndex(str(tmp_path / "index")), 3)
        assert sorted(reopened.workers) == [0, 1, 2]
        assert reopened.url(1) == "http://h:9"
        await reopened.index.close()

    run(main())


def test_replicas_follow_rendezvous_order_skipping_down_workers(tmp_path: Path) -> None:
    async def main() -> None:
        membership = await registered(tmp_path, 5)
        order = [membership.workers[i].info.index for i in range(5)]
        ids = {membership.workers[i].info.id: i for i in order}
        ranked = [ids[wid] for wid in rank("/k", ids)]
        assert membership.choose_replicas("/k") == ranked[:3]
        membership.suspect(ranked[0], "test")
        assert membership.choose_replicas("/k") == ranked[1:4]
        assert membership.preferred("/k") == set(ranked[:3])
        assert membership.heartbeat(membership.workers[ranked[0]].info.id, {})
        assert membership.choose_replicas("/k") == ranked[:3]
        await membership.index.close()

    run(main())


def test_too_few_up_workers_refuse_a_write(tmp_path: Path) -> None:
    async def main() -> None:
        membership = await registered(tmp_path, 3)
        membership.suspect(0, "test")
        with pytest.raises(NotEnoughWorkers):
            membership.choose_replicas("/k")
        await membership.index.close()

    run(main())


def test_draining_workers_take_no_new_replicas(tmp_path: Path) -> None:
    async def main() -> None:
        membership = await registered(tmp_path, 4)
        await membership.set_draining(2, True)
        assert membership.replica_count() == 3
        for key in ("/a", "/b", "/c", "/d", "/e"):
            assert 2 not in membership.choose_replicas(key)
        await membership.set_draining(2, False)
        assert membership.draining == set()
        await membership.index.close()

    run(main())


def test_only_a_stopped_worker_is_removed(tmp_path: Path) -> None:
    async def main() -> None:
        membership = await registered(tmp_path, 3)
        with pytest.raises(StateConflict):
            await membership.remove(1)
        with pytest.raises(NotFound):
            await membership.remove(7)
        membership.suspect(1, "test")
        await membership.remove(1)
        assert sorted(membership.workers) == [0, 2]
        fresh = await membership.register("w-0000000000ff", "http://h:99", None)
        assert fresh.index == 3  # indices are never reused
        await membership.index.close()

    run(main())


def test_a_worker_that_keys_still_need_is_not_removed(tmp_path: Path) -> None:
    async def main() -> None:
        membership = await registered(tmp_path, 3)
        only = IndexRecord("/only", "v1", 1, "m", (1,), 1, 1)
        shared = IndexRecord("/shared", "v1", 1, "m", (0, 1), 1, 1)
        for record in (only, shared):
            await membership.index.begin_write(record)
            await membership.index.commit_write(record, [])
        membership.suspect(1, "test")
        with pytest.raises(StateConflict) as refused:
            await membership.remove(1, force=True)
        assert refused.value.code == "only_copy"
        await membership.index.remove(only)
        with pytest.raises(StateConflict) as refused:
            await membership.remove(1)
        assert refused.value.code == "worker_in_use"
        await membership.remove(1, force=True)
        assert sorted(membership.workers) == [0, 2]
        await membership.index.close()

    run(main())
