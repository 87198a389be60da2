"""The master's batcher (master/replica_io.py: Batcher, and HttpTransport's small puts and
deletes) against an in-process fake worker: a real aiohttp server on 127.0.0.1, port 0,
serving the batch stream (the worker's own worker/batch_stream.py over a fake store), or
only ``POST /batch``, as a worker older than the stream does: every test runs both ways."""

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from fakes import run

from kittenfs import batch
from kittenfs.errors import ReplicaError
from kittenfs.master import replica_io
from kittenfs.master.replica_io import Batcher, HttpTransport
from kittenfs.metrics import Metrics
from kittenfs.placement import blob_id
from kittenfs.server import METRICS
from kittenfs.worker.batch_stream import OPEN_STREAMS, serve_stream, track_streams

VERSION = "17979cfe3d85cd1501020304"


@pytest.fixture(params=[True, False], ids=["stream", "post"])
def stream(request: pytest.FixtureRequest) -> bool:
    """Whether the fake worker serves the batch stream (else only POST /batch)."""
    return bool(request.param)


def put_args(n: int, value: bytes = b"v") -> tuple[str, str, str, bytes]:
    return blob_id(f"/k{n}", VERSION), f"/k{n}", VERSION, value


@dataclass
class FakeWorker:
    """A worker's batches: records each batch, answers each operation (``answer`` may
    override), and holds its answers while ``hold`` is clear; ``status`` other than 200
    fails a whole batch (a stream answers it with an error)."""

    stream: bool = True
    batches: list[list[batch.Op]] = field(default_factory=list)
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    answer: Callable[[batch.Op], dict[str, Any]] | None = None
    status: int = 200
    upgrades: int = 0
    app: web.Application | None = None

    def __post_init__(self) -> None:
        self.hold.set()

    async def apply(self, ops: list[batch.Op]) -> list[dict[str, object]]:
        self.batches.append(ops)
        self.arrived.set()
        await self.hold.wait()
        if self.status != 200:
            raise batch.BadBatch(f"status {self.status}")
        return [self._result(op) for op in ops]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            self.upgrades += 1
            return await serve_stream(request, self.apply)
        try:
            results = await self.apply(batch.decode(await request.read()))
        except batch.BadBatch:
            return web.Response(status=self.status, text="no")
        return web.json_response({"results": results})

    async def one_on_the_wire(self, batcher: Batcher, url: str) -> asyncio.Task[tuple[int, str]]:
        """Hold this worker's answers and send it one put; return that put's task once its
        batch is on the wire (what comes next queues behind it)."""
        self.hold.clear()
        first = asyncio.create_task(batcher.put(url, *put_args(0)))
        await self.arrived.wait()
        return first

    def _result(self, op: batch.Op) -> dict[str, Any]:
        if self.answer is not None:
            return self.answer(op)
        if isinstance(op, batch.PutOp):
            md5 = hashlib.md5(op.value, usedforsecurity=False).hexdigest()
            return {"status": 201, "size": len(op.value), "md5": md5}
        return {"status": 204}


@asynccontextmanager
async def serving(
    worker: FakeWorker, answer_timeout: float = 5.0
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """Serve ``worker`` on 127.0.0.1 (port 0); yield its URL and a master session that waits
    ``answer_timeout`` seconds for an answer."""
    app = web.Application()
    worker.app = app
    app[METRICS] = Metrics("worker", lambda path: "batch")
    track_streams(app)
    app.router.add_post("/batch", worker.handle)
    if worker.stream:
        app.router.add_get("/batch", worker.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    session = replica_io.new_session(answer_timeout, None)
    try:
        yield f"http://127.0.0.1:{port}", session
    finally:
        await session.close()
        await runner.cleanup()


def test_a_lone_put_leaves_at_once_and_returns_what_the_worker_made_durable(stream: bool) -> None:
    async def main() -> None:
        worker = FakeWorker(stream)
        async with serving(worker) as (url, session):
            transport = HttpTransport(session, lambda index: url)
            size, md5 = await transport.put_small(0, *put_args(1, b"abc"))
            assert (size, md5) == (3, hashlib.md5(b"abc", usedforsecurity=False).hexdigest())
            await transport.delete(0, put_args(1)[0])
            assert worker.batches == [
                [batch.PutOp(*put_args(1, b"abc"))],
                [batch.DeleteOp(put_args(1)[0])],
            ]
            await transport.close()

    run(main())


def test_operations_queue_behind_a_batch_on_the_wire_and_leave_together(stream: bool) -> None:
    """The network's group commit: while one batch is on the wire to a worker, everything
    else for it waits, then goes in one request."""

    async def main() -> None:
        worker = FakeWorker(stream)
        async with serving(worker) as (url, session):
            batcher = Batcher(session)
            first = await worker.one_on_the_wire(batcher, url)
            rest: list[asyncio.Task[object]] = [
                asyncio.create_task(batcher.put(url, *put_args(n))) for n in range(1, 6)
            ]
            rest.append(asyncio.create_task(batcher.delete(url, put_args(9)[0])))
            await asyncio.sleep(0.05)  # a window in which nothing else may leave
            assert len(worker.batches) == 1  # the others wait for the one on the wire
            worker.hold.set()
            await asyncio.gather(first, *rest)
            assert [len(ops) for ops in worker.batches] == [1, 6]
            await batcher.close()

    run(main())


def test_batches_are_bounded_in_operations(stream: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "MAX_OPS", 3)

    async def main() -> None:
        worker = FakeWorker(stream)
        async with serving(worker) as (url, session):
            batcher = Batcher(session)
            first = await worker.one_on_the_wire(batcher, url)
            rest = [asyncio.create_task(batcher.put(url, *put_args(n))) for n in range(1, 8)]
            await asyncio.sleep(0.05)
            worker.hold.set()
            await asyncio.gather(first, *rest)
            assert [len(ops) for ops in worker.batches] == [1, 3, 3, 1]
            await batcher.close()

    run(main())


def test_each_operation_gets_its_own_answer(stream: bool) -> None:
    async def main() -> None:
        def answer(op: batch.Op) -> dict[str, Any]:
            if isinstance(op, batch.DeleteOp):
                return {"status": 404}  # not there: counts as deleted
            if op.key == "/k1":
                return {"status": 507, "error": "disk_full", "message": "full"}
            return {"status": 201, "size": len(op.value), "md5": "m"}

        worker = FakeWorker(stream, answer=answer)
        async with serving(worker) as (url, session):
            batcher = Batcher(session)
            first = await worker.one_on_the_wire(batcher, url)
            full = asyncio.create_task(batcher.put(url, *put_args(1)))
            gone = asyncio.create_task(batcher.delete(url, put_args(2)[0]))
            worker.hold.set()
            assert await first == (1, "m")
            with pytest.raises(ReplicaError, match="507: disk_full"):
                await full
            await gone
            await batcher.close()

    run(main())


def test_a_failed_batch_fails_its_operations_and_the_next_goes_on(stream: bool) -> None:
    async def main() -> None:
        worker = FakeWorker(stream, status=500)
        async with serving(worker) as (url, session):
            batcher = Batcher(session)
            with pytest.raises(ReplicaError, match=r"answered 500|refused a batch: status 500"):
                await batcher.put(url, *put_args(0))
            worker.answer = lambda op: {"status": 201}  # no size, md5: a garbled answer
            worker.status = 200
            with pytest.raises(ReplicaError):
                await batcher.put(url, *put_args(1))
            worker.answer = None
            assert await batcher.put(url, *put_args(2, b"ok")) == (2, _md5(b"ok"))
            await batcher.close()

    run(main())


def test_a_worker_that_cannot_be_reached_is_unreachable(stream: bool) -> None:
    async def main() -> None:
        worker = FakeWorker(stream)
        async with serving(worker) as (url, session):
            pass  # the server is gone now
        session = replica_io.new_session(5.0, None)
        batcher = Batcher(session)
        with pytest.raises(ReplicaError) as failed:
            await batcher.delete(url, put_args(0)[0])
        assert failed.value.unreachable
        await batcher.close()
        await session.close()

    run(main())


def test_an_operation_whose_caller_left_is_not_sent(stream: bool) -> None:
    async def main() -> None:
        worker = FakeWorker(stream)
        async with serving(worker) as (url, session):
            batcher = Batcher(session)
            first = await worker.one_on_the_wire(batcher, url)
            left = asyncio.create_task(batcher.put(url, *put_args(1)))
            stays = asyncio.create_task(batcher.put(url, *put_args(2)))
            await asyncio.sleep(0.01)
            left.cancel()
            worker.hold.set()
            await asyncio.gather(first, stays)
            assert [[op.blob for op in ops] for ops in worker.batches] == [
                [put_args(0)[0]],
                [put_args(2)[0]],
            ]
            await batcher.close()

    run(main())


def test_close_fails_the_batches_under_way(stream: bool) -> None:
    async def main() -> None:
        worker = FakeWorker(stream)
        async with serving(worker) as (url, session):
            batcher = Batcher(session)
            waiting = await worker.one_on_the_wire(batcher, url)
            await batcher.close()
            with pytest.raises(ReplicaError):
                await waiting
            worker.hold.set()

    run(main())


def test_batches_share_one_stream_or_fall_back_to_post(stream: bool) -> None:
    """One upgrade carries every batch; a worker that refuses it (405) gets POST /batch."""

    async def main() -> None:
        worker = FakeWorker(stream)
        async with serving(worker) as (url, session):
            batcher = Batcher(session)
            for n in range(5):
                assert await batcher.put(url, *put_args(n, b"x" * n)) == (n, _md5(b"x" * n))
            assert len(worker.batches) == 5
            assert worker.upgrades == (1 if stream else 0)
            await batcher.close()

    run(main())


def test_a_stream_that_breaks_fails_its_batch_and_the_next_batch_opens_another() -> None:
    async def main() -> None:
        worker = FakeWorker(stream=True)
        async with serving(worker) as (url, session):
            batcher = Batcher(session)
            waiting = await worker.one_on_the_wire(batcher, url)
            assert worker.app is not None
            await worker.app[OPEN_STREAMS].close()  # as a worker that stops does
            with pytest.raises(ReplicaError) as failed:
                await waiting
            assert failed.value.unreachable
            worker.hold.set()
            assert await batcher.put(url, *put_args(1, b"again")) == (5, _md5(b"again"))
            assert worker.upgrades == 2
            await batcher.close()

    run(main())


def test_an_answer_later_than_the_timeout_fails_the_batch_and_closes_the_stream() -> None:
    async def main() -> None:
        worker = FakeWorker(stream=True)
        async with serving(worker, answer_timeout=2.0) as (url, session):
            batcher = Batcher(session)
            worker.hold.clear()
            with pytest.raises(ReplicaError, match="no answer") as failed:
                await batcher.put(url, *put_args(0))
            assert failed.value.unreachable
            worker.hold.set()
            assert await batcher.put(url, *put_args(1, b"on")) == (2, _md5(b"on"))
            assert worker.upgrades == 2  # the late stream was not trusted again
            await batcher.close()

    run(main())


def test_a_batch_the_worker_fails_with_is_answered_at_once(stream: bool) -> None:
    """A worker's own failure is an answer (500, or an error on the stream), not a wait for
    the answer timeout."""

    async def main() -> None:
        def broken(op: batch.Op) -> dict[str, Any]:
            raise RuntimeError("index on fire")

        worker = FakeWorker(stream, answer=broken)
        async with serving(worker, answer_timeout=30.0) as (url, session):
            batcher = Batcher(session)
            with pytest.raises(ReplicaError, match=r"500|RuntimeError: index on fire"):
                await asyncio.wait_for(batcher.put(url, *put_args(0)), 10)
            worker.answer = None
            assert await batcher.put(url, *put_args(1, b"ok")) == (2, _md5(b"ok"))
            await batcher.close()

    run(main())


def _md5(value: bytes) -> str:
    return hashlib.md5(value, usedforsecurity=False).hexdigest()
