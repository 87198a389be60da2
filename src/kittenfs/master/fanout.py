"""Fan-out: one incoming stream copied to several consumers with bounded memory.

Each consumer reads from its own small queue; the producer waits when any live consumer's
queue is full, so memory stays under ``consumers x depth x chunk size`` however large the
value.  A consumer that stops (its upload failed) is skipped from then on, never waited for,
and one that takes no chunk for ``stall_timeout`` seconds fails the whole copy (Stalled).
"""

import asyncio
from collections.abc import AsyncIterator

#: Chunks buffered per consumer before the producer waits.
QUEUE_DEPTH = 4

_EOF = object()
_ABORT = object()


class Stalled(Exception):
    """A consumer took no data for too long (a hung worker): the copy cannot finish."""


class StreamAborted(Exception):
    """The producer gave up (for example the client disconnected); the copy is incomplete."""


class Branch:
    """One consumer's view of the stream: iterate it to receive the chunks."""

    def __init__(self, stall_timeout: float) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue(QUEUE_DEPTH)
        self.stopped = False
        self.aborted = False  # the producer cut this consumer off: its failure is ours
        self.stall_timeout = stall_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            item = await self.queue.get()
            if item is _EOF:
                return
            if item is _ABORT:
                raise StreamAborted("the incoming stream was cut short")
            assert isinstance(item, bytes)
            yield item

    def stop(self) -> None:
        """Mark this consumer as gone and free its queue, so the producer never blocks on it."""
        self.stopped = True
        while not self.queue.empty():
            self.queue.get_nowait()

    def on_consumer_done(self, _: object) -> None:
        """Stop this branch when its consumer task ends (a done-callback)."""
        self.stop()

    async def send(self, item: object) -> None:
        if self.stopped:
            return
        if not self.queue.full():
            self.queue.put_nowait(item)
            return
        try:
            await asyncio.wait_for(self.queue.put(item), self.stall_timeout)
        except TimeoutError:
            raise Stalled(f"a replica took no data for {self.stall_timeout:.0f} s") from None

    def abort(self) -> None:
        """Make the consumer's iteration fail, without waiting for queue space."""
        if self.stopped:
            return
        self.aborted = True
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(_ABORT)


class FanOut:
    """Copies chunks to ``n`` branches."""

    def __init__(self, n: int, stall_timeout: float = 30.0) -> None:
        self.branches = [Branch(stall_timeout) for _ in range(n)]

    async def send(self, chunk: bytes) -> None:
        """Give ``chunk`` to every live branch, waiting while any live branch is full."""
        for branch in self.branches:
            await branch.send(chunk)

    async def close(self) -> None:
        """Tell every live branch the stream is complete."""
        for branch in self.branches:
            await branch.send(_EOF)

    def abort(self) -> None:
        """Tell every live branch the stream is incomplete."""
        for branch in self.branches:
            branch.abort()
