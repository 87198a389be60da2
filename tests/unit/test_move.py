"""The move protocol (master/move.py) with the fake transport: copies land before the switch,
the dropped replicas become garbage, and a write during a move wins."""

import dataclasses
from pathlib import Path

from fakes import chunks, open_core, run

from kittenfs.master.index import Space
from kittenfs.master.move import Outcome
from kittenfs.placement import blob_id
from kittenfs.records import IndexRecord


def test_a_new_worker_receives_its_copy_and_the_old_one_is_reaped(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path, workers=3)
        record = (await core.store.put("/k", chunks(b"value"), 5)).record
        for i in range(3, 6):  # more workers: the key's preferred set changes
            await core.membership.register(f"w-{i:012x}", f"http://h:{i}", None)
        plan = await core.mover.plan(record, deep=True)
        assert plan.good == record.replicas
        assert not plan.settled(record) or set(plan.target) == set(record.replicas)
        assert await core.mover.move(Space.LIVE, record, plan) is Outcome.MOVED
        moved = await core.index.get(Space.LIVE, "/k")
        assert moved is not None and set(moved.replicas) == set(plan.target)
        await core.reaper.reap_once()
        assert core.transport.holders(moved) == set(plan.target)
        await core.index.close()

    run(main())


def test_a_missing_copy_is_repaired_from_a_good_one(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path, workers=3)
        record = (await core.store.put("/k", chunks(b"value"), 5)).record
        lost = record.replicas[0]
        del core.transport.held(lost)[blob_id("/k", record.version)]
        plan = await core.mover.plan(record, deep=True)
        assert plan.missing == (lost,) and plan.needs == (lost,)
        assert await core.mover.move(Space.LIVE, record, plan) is Outcome.MOVED
        assert core.transport.holders(record) == set(record.replicas)
        await core.index.close()

    run(main())


def test_a_write_during_the_move_wins(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path, workers=3)
        record = (await core.store.put("/k", chunks(b"one"), 3)).record
        core.transport.held(record.replicas[0]).clear()
        plan = await core.mover.plan(record, deep=False)
        newer = (await core.store.put("/k", chunks(b"two"), 3)).record
        assert await core.mover.move(Space.LIVE, record, plan) is Outcome.CHANGED_MEANWHILE
        assert await core.index.get(Space.LIVE, "/k") == newer
        await core.reaper.reap_once()
        assert core.transport.holders(record) == set()
        assert core.transport.holders(newer) == set(newer.replicas)
        await core.index.close()

    run(main())


def test_a_key_is_moved_by_one_move_at_a_time(tmp_path: Path) -> None:
    async def main() -> None:
        core = await open_core(tmp_path, workers=3)
        record = (await core.store.put("/k", chunks(b"one"), 3)).record
        plan = await core.mover.plan(record, deep=False)
        core.mover.moving.add("/k")
        assert await core.mover.move(Space.LIVE, record, plan) is Outcome.BUSY
        await core.index.close()

    run(main())


def test_garbage_of_a_crashed_move_spares_the_copies_of_the_next_one(tmp_path: Path) -> None:
    """A rebalance cut by a crash leaves its copies as garbage; the next rebalance copies
    the same version to the same workers.  The reaper, running during that copy, must not
    delete the new copies (the move then found them gone and gave up, misplaced)."""

    async def main() -> None:
        core = await open_core(tmp_path, workers=3)
        record = (await core.store.put("/k", chunks(b"value"), 5)).record
        for i in range(3, 6):
            await core.membership.register(f"w-{i:012x}", f"http://h:{i}", None)
        plan = await core.mover.plan(record, deep=False)
        assert plan.needs
        crashed = dataclasses.replace(record, replicas=plan.needs, size=-1)
        await core.index.begin_move(crashed)
        for dest in plan.needs:
            await core.transport.copy(record, plan.good[0], dest)
        assert await core.index.pending_to_garbage(15.0) == 1  # the master restarted

        copy = core.transport.copy

        async def copy_then_reap(record: IndexRecord, source: int, dest: int) -> tuple[int, str]:
            stored = await copy(record, source, dest)
            await core.reaper.reap_once()  # the background reaper, between copy and switch
            return stored

        core.transport.copy = copy_then_reap  # type: ignore[method-assign]
        assert await core.mover.move(Space.LIVE, record, plan) is Outcome.MOVED
        await core.reaper.reap_once()
        moved = await core.index.get(Space.LIVE, "/k")
        assert moved is not None and core.transport.holders(moved) == set(plan.target)
        await core.index.close()

    run(main())
