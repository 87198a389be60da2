"""Streaming large responses with bounded memory and time.

A client that asks for a large value and then reads nothing (or a byte a minute) must not
hold the server's memory or a connection for ever: 300 such clients of a 64 MiB value once
took a master from 50 to 348 MiB.  So a streamed response

- keeps its connection's send buffer small (``SEND_BUFFER``): a write waits for the client
  to take the bytes before the next piece is read;
- gives up when the client takes nothing for ``send_timeout`` seconds: the connection is
  cut and everything it held is freed;
- first reserves its share of a process-wide ``ByteBudget``: the bytes every stream in
  progress may hold at once are capped, and a stream that finds no room within
  ``BUDGET_WAIT`` seconds is refused with 503 and Retry-After.  One client address may hold
  at most half of it (429 past that), so one client cannot keep everyone else out; members
  of the cluster (the master reading from a worker) are not counted per address.
"""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from .httputil import HTTPProblem, ResponseAborted

#: Bytes a connection's transport may buffer before a write waits for the client.
SEND_BUFFER = 64 * 1024
#: Seconds a stream waits for room in the budget before it is refused (503).
BUDGET_WAIT = 10.0


async def one_chunk(value: bytes) -> AsyncIterator[bytes]:
    """Yield ``value`` whole: a body already in memory, for a write that takes a stream."""
    yield value


class ByteBudget:
    """The bytes that streams in progress may hold at once, handed out first come first served."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0
        self.by_client: Counter[str] = Counter()
        self._room = asyncio.Condition()

    @asynccontextmanager
    async def reserve(
        self, size: int, client: str | None, wait: float = BUDGET_WAIT
    ) -> AsyncIterator[None]:
        """Hold ``size`` bytes of the budget for the block's duration, for ``client`` (an
        address; None for a member of the cluster, not counted per address); raise 429 or
        503 if they cannot be had within ``wait`` seconds."""
        size = min(size, self.total)  # a stream larger than the budget runs alone
        share = max(size, self.total // 2)
        async with self._room:
            try:
                async with asyncio.timeout(wait):
                    await self._room.wait_for(
                        lambda: (
                            self.held + size <= self.total
                            and (client is None or self.by_client[client] + size <= share)
                        )
                    )
            except TimeoutError:
                raise self._refusal(client, size, share) from None
            self.held += size
            if client is not None:
                self.by_client[client] += size
        try:
            yield
        finally:
            async with self._room:
                self.held -= size
                if client is not None:
                    self.by_client[client] -= size
                    if not self.by_client[client]:
                        del self.by_client[client]
                self._room.notify_all()

    def _refusal(self, client: str | None, size: int, share: int) -> HTTPProblem:
        """The answer to a stream that found no room: 429 if its client's share was what
        stood in its way, else 503."""
        if client is not None and self.by_client[client] + size > share:
            refusal = HTTPProblem(
                429,
                "too_many_streams_from_client",
                f"{self.by_client[client]} bytes of responses are being "
                f"streamed to {client}, half of what this process holds at "
                "once (--stream-buffer-bytes); try again",
                **{"Retry-After": "2"},
            )
        else:
            refusal = HTTPProblem(
                503,
                "busy",
                f"{self.held} bytes of responses are being "
                f"streamed, the most this process holds at once "
                f"(--stream-buffer-bytes); try again",
                **{"Retry-After": "2"},
            )
        refusal.close = True  # the client may never read the answer: do not wait for it
        return refusal


class Sender:
    """Writes one streamed response, each piece within ``send_timeout`` seconds."""

    def __init__(
        self, request: web.BaseRequest, response: web.StreamResponse, send_timeout: float
    ) -> None:
        self.request = request
        self.response = response
        self.send_timeout = send_timeout
        self.sent = 0

    async def start(self) -> None:
        """Send the response's head, with the connection's send buffer made small."""
        transport = self.request.transport
        if transport is not None:
            transport.set_write_buffer_limits(high=SEND_BUFFER)
        await self.response.prepare(self.request)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``; raise ResponseAborted (the connection is cut) if the client has
        gone, or takes nothing for ``send_timeout`` seconds.  The piece goes out in one
        write (slicing it cost a third of a fast reader's throughput); while the write waits
        for the client, the deadline moves on whenever the client has taken bytes, so a slow
        reader that keeps reading is never cut."""
        try:
            async with asyncio.timeout(self.send_timeout) as deadline:
                watch = _ProgressWatch(self.request.transport, deadline, self.send_timeout)
                try:
                    await self.response.write(data)
                finally:
                    watch.stop()
        except TimeoutError:
            self._cut()
            raise ResponseAborted(
                f"the client took no data for {self.send_timeout:g} s (--send-timeout)"
            ) from None
        except (ConnectionError, aiohttp.ClientConnectionError) as exc:
            raise ResponseAborted(f"the client went away: {exc}") from None
        self.sent += len(data)

    async def finish(self) -> None:
        """End the response."""
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.response.write_eof()
        except TimeoutError:
            self._cut()
            raise ResponseAborted("the client took no data at the end") from None
        except (ConnectionError, aiohttp.ClientConnectionError) as exc:
            raise ResponseAborted(f"the client went away: {exc}") from None

    def _cut(self) -> None:
        if self.request.transport is not None:
            self.request.transport.abort()


class _ProgressWatch:
    """Moves a write's deadline to ``timeout`` seconds after the client last took bytes
    (looked at four times per ``timeout``: the transport's buffer shrank)."""

    def __init__(
        self, transport: asyncio.BaseTransport | None, deadline: asyncio.Timeout, timeout: float
    ) -> None:
        self._transport = transport if isinstance(transport, asyncio.WriteTransport) else None
        self._deadline = deadline
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._buffered = self._buffer_size()
        self._timer = self._loop.call_later(timeout / 4, self._look)

    def _buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def _look(self) -> None:
        buffered = self._buffer_size()
        if buffered < self._buffered:
            self._deadline.reschedule(self._loop.time() + self._timeout)
        self._buffered = buffered
        self._timer = self._loop.call_later(self._timeout / 4, self._look)

    def stop(self) -> None:
        self._timer.cancel()
