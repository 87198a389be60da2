"""The reaper on a shared index: another master's move may commit between the reaper's
check of a key and its delete of a garbage copy (the key lock is per master).  The reaper
reads the record again after its deletes and reports a copy it deleted that the record
names again, so that it is copied back at once (the repair queue), not left for a scrub."""

import asyncio
import dataclasses
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakes import Blob, FakeTransport, open_core, run

from kittenfs.master.index import Space
from kittenfs.placement import blob_id
from kittenfs.records import IndexRecord, WorkerInfo


@dataclass
class MovedMeanwhile(FakeTransport):
    """Workers whose first delete of a blob is preceded by ``meanwhile`` (another master's
    commit, landing between the reaper's check and its delete)."""

    meanwhile: list[Coroutine[Any, Any, None]] = field(default_factory=list)

    async def delete(self, worker: int, blob: str) -> None:
        while self.meanwhile:
            await self.meanwhile.pop()
        await super().delete(worker, blob)


def lost_after_delete(tmp_path: Path, moved_back: bool) -> list[tuple[IndexRecord, int]]:
    """Delete the garbage copy of /k's version on worker 2 (left there by a move away); with
    ``moved_back``, another master moves the version back to worker 2 meanwhile.  Return what
    the reaper reported lost."""

    async def body() -> list[tuple[IndexRecord, int]]:
        core = await open_core(tmp_path)
        core.transport = core.reaper.transport = MovedMeanwhile()
        core.index.shared = True  # as PostgreSQL or etcd: other masters commit too
        lost: list[tuple[IndexRecord, int]] = []
        core.reaper.lost = lambda record, worker: lost.append((record, worker))
        record = IndexRecord("/k", "v1", 3, "md5", (0, 1), 1, 2)
        await core.index.begin_write(dataclasses.replace(record, size=-1))
        await core.index.commit_write(record, [])
        blob = blob_id("/k", "v1")
        for worker in (0, 1, 2):
            core.transport.held(worker)[blob] = Blob("/k", "v1", b"abc")
        moved = dataclasses.replace(record, replicas=(0, 1, 2))
        if moved_back:
            core.transport.meanwhile = [core.index.update(Space.LIVE, record, moved)]
        dropped = dataclasses.replace(record, replicas=(2,))
        assert await core.reaper.delete(dropped)
        assert 2 not in core.transport.holders(record)
        await core.index.close()
        return lost

    return run(body())


def test_a_copy_deleted_as_another_master_moves_it_back_is_reported(tmp_path: Path) -> None:
    [(record, worker)] = lost_after_delete(tmp_path, moved_back=True)
    assert worker == 2 and record.replicas == (0, 1, 2)


def test_a_copy_deleted_with_no_move_meanwhile_is_not_reported(tmp_path: Path) -> None:
    assert lost_after_delete(tmp_path, moved_back=False) == []


def test_garbage_on_a_worker_another_master_registered_is_deleted(tmp_path: Path) -> None:
    """A worker registered through another master a moment ago is not yet in this master's
    view: the reaper takes it in from the index and deletes its garbage copy, instead of
    taking it for a removed worker and forgetting the copy."""

    async def body() -> None:
        core = await open_core(tmp_path)
        core.index.shared = True
        newcomer = WorkerInfo("w-newcomer", 3, "http://127.0.0.1:4003", 1)
        await core.index.save_worker(newcomer)  # as another master registers it
        record = IndexRecord("/k", "v1", 3, "md5", (3,), 1, 2)
        core.transport.held(3)[blob_id("/k", "v1")] = Blob("/k", "v1", b"abc")
        assert await core.reaper.delete(record)
        assert 3 in core.membership.workers
        assert core.transport.holders(record) == set()
        await core.index.close()

    run(body())


def test_a_move_in_flight_to_a_deleted_copy_is_watched_to_its_commit(tmp_path: Path) -> None:
    """Another master begins a move of the version back to worker 2 between the reaper's
    check and its delete, and commits it after the reaper's second read: the reaper watches
    the move in flight and reports the copy once the commit names it."""

    async def body() -> None:
        core = await open_core(tmp_path)
        core.transport = core.reaper.transport = MovedMeanwhile()
        core.index.shared = True
        lost: list[tuple[IndexRecord, int]] = []
        core.reaper.lost = lambda record, worker: lost.append((record, worker))
        record = IndexRecord("/k", "v1", 3, "md5", (0, 1), 1, 2)
        await core.index.begin_write(dataclasses.replace(record, size=-1))
        await core.index.commit_write(record, [])
        for worker in (0, 1, 2):
            core.transport.held(worker)[blob_id("/k", "v1")] = Blob("/k", "v1", b"abc")
        move = dataclasses.replace(record, replicas=(2,))
        core.transport.meanwhile = [core.index.begin_move(move)]
        assert await core.reaper.delete(dataclasses.replace(record, replicas=(2,)))
        assert lost == []  # the move has not committed yet
        moved = dataclasses.replace(record, replicas=(0, 1, 2))
        await core.index.commit_move(Space.LIVE, record, moved, ())
        for _ in range(200):
            if lost:
                break
            await asyncio.sleep(0.05)
        assert lost == [(moved, 2)]
        await core.index.close()

    run(body())
