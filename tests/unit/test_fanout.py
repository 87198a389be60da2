"""FanOut: one stream copied to several consumers with bounded memory."""

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

import pytest

from kittenfs.master.fanout import QUEUE_DEPTH, Branch, FanOut, StreamAborted

T = TypeVar("T")

#: Generous bound on anything that should finish at once; a hang fails instead of blocking.
LIMIT = 5.0

CHUNKS = [f"chunk-{i:03d}".encode() for i in range(50)]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, LIMIT))


async def settle(rounds: int = 20) -> None:
    """Let every runnable task run until it blocks."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def collect(branch: Branch) -> list[bytes]:
    return [chunk async for chunk in branch]


async def produce(fan: FanOut, chunks: list[bytes]) -> None:
    for chunk in chunks:
        await fan.send(chunk)
    await fan.close()


class CountingProducer:
    """Sends CHUNKS into a fan-out, counting the chunks handed over so far."""

    def __init__(self, fan: FanOut, close: bool = True) -> None:
        self.fan, self.close, self.sent = fan, close, 0

    async def run(self) -> None:
        for chunk in CHUNKS:
            await self.fan.send(chunk)
            self.sent += 1
        if self.close:
            await self.fan.close()


def test_queue_depth() -> None:
    assert QUEUE_DEPTH == 4


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_every_branch_gets_every_chunk_in_order(n: int) -> None:
    async def main() -> list[list[bytes]]:
        fan = FanOut(n)
        assert len(fan.branches) == n
        results = await asyncio.gather(
            produce(fan, CHUNKS), *(collect(branch) for branch in fan.branches)
        )
        return cast(list[list[bytes]], results[1:])  # gather gave [None, *lists]

    assert run(main()) == [CHUNKS] * n


def test_empty_stream() -> None:
    async def main() -> list[list[bytes]]:
        fan = FanOut(2)
        results = await asyncio.gather(produce(fan, []), *map(collect, fan.branches))
        return cast(list[list[bytes]], results[1:])  # gather gave [None, *lists]

    assert run(main()) == [[], []]


def test_consumers_at_different_speeds() -> None:
    async def slow(branch: Branch, delay_every: int) -> list[bytes]:
        got = []
        async for chunk in branch:
            got.append(chunk)
            if len(got) % delay_every == 0:
                await asyncio.sleep(0.001)
        return got

    async def main() -> list[list[bytes]]:
        fan = FanOut(3)
        results = await asyncio.gather(
            produce(fan, CHUNKS),
            slow(fan.branches[0], 1),
            slow(fan.branches[1], 7),
            collect(fan.branches[2]),
        )
        return cast(list[list[bytes]], results[1:])  # gather gave [None, *lists]

    assert run(main()) == [CHUNKS] * 3


def test_branch_stopped_midway_never_blocks_the_producer() -> None:
    async def quitter(branch: Branch) -> list[bytes]:
        got = []
        async for chunk in branch:
            got.append(chunk)
            if len(got) == 2:
                break
        branch.stop()  # its upload failed: it will never read again
        return got

    async def main() -> tuple[list[bytes], list[bytes]]:
        fan = FanOut(2)
        _, whole, part = await asyncio.gather(
            produce(fan, CHUNKS), collect(fan.branches[0]), quitter(fan.branches[1])
        )
        return whole, part

    whole, part = run(main())
    assert whole == CHUNKS
    assert part == CHUNKS[:2]


def test_stopping_a_full_branch_releases_a_blocked_producer() -> None:
    async def main() -> None:
        fan = FanOut(2)
        reader = asyncio.create_task(collect(fan.branches[0]))
        producer = asyncio.create_task(produce(fan, CHUNKS))
        await settle()
        assert not producer.done()  # blocked on branch 1, which nobody reads
        assert fan.branches[1].queue.full()
        fan.branches[1].stop()
        assert fan.branches[1].stopped
        assert fan.branches[1].queue.qsize() <= 1  # its buffered chunks are freed
        await producer
        assert await reader == CHUNKS

    run(main())


def test_branch_stopped_before_the_stream_is_skipped() -> None:
    async def main() -> None:
        fan = FanOut(3)
        fan.branches[0].stop()
        fan.branches[2].stop()
        results = await asyncio.gather(produce(fan, CHUNKS), collect(fan.branches[1]))
        assert results[1] == CHUNKS
        assert fan.branches[0].queue.empty() and fan.branches[2].queue.empty()

    run(main())


def test_every_branch_stopped() -> None:
    async def main() -> None:
        fan = FanOut(2)
        for branch in fan.branches:
            branch.stop()
        await produce(fan, CHUNKS)  # nobody listens; nothing waits

    run(main())


def test_abort_makes_consumers_raise() -> None:
    async def main() -> None:
        fan = FanOut(3)
        received: list[list[bytes]] = [[], [], []]

        async def consume(i: int) -> None:
            async for chunk in fan.branches[i]:
                received[i].append(chunk)

        consumers = [asyncio.create_task(consume(i)) for i in range(3)]
        for chunk in CHUNKS[:10]:
            await fan.send(chunk)
        await settle()
        fan.abort()
        results = await asyncio.gather(*consumers, return_exceptions=True)
        assert all(isinstance(result, StreamAborted) for result in results)
        assert received == [CHUNKS[:10]] * 3  # what came before the abort was delivered

    run(main())


def test_abort_does_not_wait_for_a_full_queue() -> None:
    async def main() -> None:
        fan = FanOut(2)
        for chunk in CHUNKS[:QUEUE_DEPTH]:
            await fan.send(chunk)  # nobody reads: both queues are now full
        assert all(branch.queue.full() for branch in fan.branches)
        fan.abort()  # synchronous: must not block even though the queues are full
        for branch in fan.branches:
            with pytest.raises(StreamAborted):
                await collect(branch)

    run(main())


def test_abort_with_a_blocked_producer_then_stop_releases_it() -> None:
    # In the write path the producer blocks on a full branch; abort makes that branch's
    # consumer fail, its upload task ends, and its done-callback stop()s the branch.
    async def main() -> None:
        fan = FanOut(1)
        producer = CountingProducer(fan)

        task = asyncio.create_task(producer.run())
        await settle()
        assert producer.sent == QUEUE_DEPTH and not task.done()
        fan.abort()  # must not block although the queue is full
        got = []
        with pytest.raises(StreamAborted):
            async for chunk in fan.branches[0]:
                got.append(chunk)
        # Only some of the buffered chunks arrive (abort may drop some), in order.
        positions = [CHUNKS.index(chunk) for chunk in got]
        assert positions == sorted(set(positions))
        assert len(got) < QUEUE_DEPTH
        fan.branches[0].stop()
        await task  # the producer runs to the end: a stopped branch never blocks it
        assert producer.sent == len(CHUNKS)

    run(main())


def test_abort_skips_stopped_branches() -> None:
    async def main() -> None:
        fan = FanOut(2)
        fan.branches[0].stop()
        fan.abort()
        assert fan.branches[0].queue.empty()
        with pytest.raises(StreamAborted):
            await collect(fan.branches[1])

    run(main())


def test_producer_blocks_on_a_slow_consumer() -> None:
    async def main() -> None:
        fan = FanOut(2)
        fast, slow = fan.branches
        producer = CountingProducer(fan)

        fast_reader = asyncio.create_task(collect(fast))
        task = asyncio.create_task(producer.run())
        await settle()
        # The slow branch holds QUEUE_DEPTH chunks; the producer waits with the next one.
        assert producer.sent == QUEUE_DEPTH
        assert slow.queue.qsize() == QUEUE_DEPTH
        assert not task.done()
        # The fast consumer has everything sent so far, plus at most the chunk in flight.
        assert fast.queue.qsize() <= 1

        slow_iter = aiter(slow)
        for step in range(1, 4):
            assert await anext(slow_iter) == CHUNKS[step - 1]
            await settle()
            assert producer.sent == QUEUE_DEPTH + step  # one chunk read, one more chunk sent
            assert slow.queue.qsize() == QUEUE_DEPTH

        rest = [chunk async for chunk in slow_iter]
        assert CHUNKS[:3] + rest == CHUNKS
        await task
        assert await fast_reader == CHUNKS

    run(main())


def test_memory_bound_with_no_reader_at_all() -> None:
    async def main() -> None:
        fan = FanOut(3)
        producer = CountingProducer(fan, close=False)

        task = asyncio.create_task(producer.run())
        await asyncio.sleep(0.05)
        assert producer.sent == QUEUE_DEPTH
        assert [branch.queue.qsize() for branch in fan.branches] == [QUEUE_DEPTH] * 3
        task.cancel()

    run(main())
