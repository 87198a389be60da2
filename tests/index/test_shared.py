"""Several masters on one shared index, on each shared engine (PostgreSQL, etcd): two index
objects with different owners on the same database or key prefix, as two master processes
would have.  Writes to one key from
both are serialized by the engine; the duties' lease passes to the other once it runs out;
a master taken for dead has its writes in flight turned into garbage, and their commits are
refused."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from etcdserver import required_etcd
from pgserver import required_server
from test_contract import pending

from kittenfs.locks import KeyLocks
from kittenfs.master.index import Index, NoLongerPending, Space, open_index
from kittenfs.master.write_path import settled
from kittenfs.records import IndexRecord

#: The engines that masters can share.
SHARED = ["postgresql", "etcd"]


@pytest.fixture(params=SHARED)
def url(request: pytest.FixtureRequest) -> str:
    """Return the ``--index`` of a new, empty index on each shared engine."""
    return required_etcd().index() if request.param == "etcd" else required_server().database()


def run(body: Callable[[str], Awaitable[None]], url: str) -> None:
    """Run ``body`` with the ``--index`` of a new index, with a generous deadline."""
    asyncio.run(asyncio.wait_for(body(url), 120))


async def two(url: str) -> tuple[Index, Index]:
    return await open_index(url, Path(), "m-a"), await open_index(url, Path(), "m-b")


def test_writes_to_one_key_from_two_masters_are_serialized(url: str) -> None:
    """Forty writers on two masters write one key five times each, every commit over the
    record its writer read (retried when another committed first), under its master's key
    lock as write_path does: every version but the last ends in the garbage exactly once,
    none is lost from sight."""
    versions = itertools.count()
    locks: dict[str, KeyLocks] = {}

    async def writer(index: Index, done: list[str]) -> None:
        for _ in range(5):
            record = IndexRecord("/hot", f"v{next(versions):04d}", 1, "m", (0, 1, 2), 1, 2)
            await index.begin_write(pending(record))

            async def attempt(record: IndexRecord = record) -> None:
                found = await index.current("/hot")
                await index.commit_write(record, [found[1]] if found else [])

            async with locks.setdefault(str(id(index)), KeyLocks()).hold("/hot"):
                await settled("/hot", attempt)
            done.append(record.version)

    async def body(url: str) -> None:
        a, b = await two(url)
        done: list[str] = []
        await asyncio.gather(*(writer(index, done) for index in (a, b) * 20))
        live = await a.current("/hot")
        assert live is not None and live[0] is Space.LIVE
        garbage = sorted(r.version for _, r in await a.garbage())
        assert sorted([*garbage, live[1].version]) == sorted(done)
        assert len(done) == 200
        await a.close()
        await b.close()

    run(body, url)


def test_the_lease_passes_to_another_master_once_it_runs_out(url: str) -> None:
    async def body(url: str) -> None:
        a, b = await two(url)
        assert await a.lease("duties", 1.0) == "m-a"
        assert await b.lease("duties", 1.0) == "m-a"
        assert await a.lease("duties", 1.0) == "m-a"  # renewed
        deadline = time.monotonic() + 30
        while await b.lease("duties", 1.0) != "m-b":  # a stopped renewing
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        assert await a.lease("duties", 1.0) == "m-b"
        await a.close()
        await b.close()

    run(body, url)


def test_a_master_taken_for_dead_loses_its_writes_in_flight(url: str) -> None:
    async def body(url: str) -> None:
        a, b = await two(url)
        await a.beat("http://127.0.0.1:1")
        await b.beat("http://127.0.0.1:2")
        assert [m for m, _ in await b.masters(60)] == ["m-a", "m-b"]
        record = IndexRecord("/k", "v1", 1, "m", (0, 1, 2), 1, 2)
        await a.begin_write(pending(record))
        assert await b.pending_to_garbage(60) == 0  # a was heard from: its write goes on
        await asyncio.sleep(1.5)
        await b.beat("http://127.0.0.1:2")
        assert [m for m, _ in await b.masters(1)] == ["m-b"]
        assert await b.pending_to_garbage(1) == 1  # a is silent: taken for dead
        with pytest.raises(NoLongerPending):
            await a.commit_write(record, [])
        assert await a.current("/k") is None
        assert [r.version for _, r in await b.garbage()] == ["v1"]
        await a.close()
        await b.close()

    run(body, url)
