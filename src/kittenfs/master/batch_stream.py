"""The master's end of the batch stream: one WebSocket to each worker's ``GET /batch``.

A batch sent as a ``POST /batch`` pays for a whole HTTP exchange (a signed request, a pooled
connection taken and given back, a response parsed); on the stream it is one binary message
out and one back (kittenfs/batch.py has the format, worker/batch_stream.py the other end).
The upgrade is signed with the cluster secret like any request of the master's session.

A stream that fails (the worker went away, an answer late past the replica timeout) fails
every batch waiting on it with a ReplicaError and is dropped; the next batch opens another.
A worker that does not serve the stream (one older than it: ``405`` to the upgrade) is sent
``POST /batch`` instead, and asked again after RETRY_UPGRADE seconds.
"""

import asyncio
import contextlib
import itertools
import json
import time
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from .. import batch
from ..errors import ReplicaError

#: Seconds before a worker that refused the upgrade is asked again.
RETRY_UPGRADE = 60.0
#: Seconds a closing stream waits for the worker's close frame (a paused worker sends none:
#: the batches waiting on it must not wait that long as well).
CLOSE_TIMEOUT = 1.0


class BatchStream:
    """One open stream to a worker: sends batches, pairs the answers with them by id."""

    def __init__(
        self, worker_url: str, socket: aiohttp.ClientWebSocketResponse, answer_timeout: float
    ) -> None:
        self.worker_url = worker_url
        self.socket = socket
        self.answer_timeout = answer_timeout
        self._ids = itertools.count()
        self._waiting: dict[bytes, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())

    @property
    def usable(self) -> bool:
        """True until the stream has failed or been closed."""
        return not self._reader.done()

    async def send(self, body: bytes) -> Any:
        """Send one batch body; return the worker's answer (parsed JSON).  Raise ReplicaError
        if the stream fails or no answer comes within ``answer_timeout`` seconds (the stream
        is then closed: a worker that slow is treated as one gone)."""
        timeout = self.answer_timeout
        ident = next(self._ids).to_bytes(batch.STREAM_ID_BYTES, "big")
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = answer
        try:
            async with asyncio.timeout(timeout):
                await self.socket.send_bytes(ident + body)
                return await answer
        except TimeoutError:
            await self.close()
            raise ReplicaError(
                f"{self.worker_url}: no answer to a batch within {timeout:g} s", unreachable=True
            ) from None
        except (ConnectionError, aiohttp.ClientError) as exc:
            await self.close()
            raise ReplicaError(
                f"{self.worker_url}: batch stream: {exc}", unreachable=True
            ) from None
        finally:
            self._waiting.pop(ident, None)

    async def _read(self) -> None:
        """Pair each answer with its batch; on the stream's end, fail what still waits."""
        reason = "the worker closed the batch stream"
        try:
            async for message in self.socket:
                if message.type != WSMsgType.BINARY:
                    reason = f"an answer of type {message.type.name} on the batch stream"
                    break
                data = message.data
                waiting = self._waiting.get(data[: batch.STREAM_ID_BYTES])
                if waiting is not None and not waiting.done():
                    try:
                        waiting.set_result(json.loads(data[batch.STREAM_ID_BYTES :]))
                    except ValueError:
                        waiting.set_exception(
                            ReplicaError(f"{self.worker_url}: an answer that is not JSON")
                        )
        except (ConnectionError, aiohttp.ClientError) as exc:
            reason = f"the batch stream failed: {exc}"
        finally:
            failure = ReplicaError(f"{self.worker_url}: {reason}", unreachable=True)
            for waiting in self._waiting.values():
                if not waiting.done():
                    waiting.set_exception(failure)
            with contextlib.suppress(Exception):
                await self.socket.close()

    async def close(self) -> None:
        """Close the stream; batches still waiting fail."""
        await self.socket.close()
        if not self._reader.done():
            self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class BatchStreams:
    """The master's streams, one per worker, opened when first needed."""

    def __init__(self, session: aiohttp.ClientSession, answer_timeout: float) -> None:
        self.session = session
        self.answer_timeout = answer_timeout
        self._open: dict[str, BatchStream] = {}
        self._refused: dict[str, float] = {}  # worker URL -> when it refused the upgrade
        self._opening: dict[str, asyncio.Lock] = {}

    async def get(self, worker_url: str) -> BatchStream | None:
        """Return an open stream to the worker (opening one if needed), or None if the worker
        does not serve the stream.  Raise ReplicaError if it cannot be reached."""
        async with self._opening.setdefault(worker_url, asyncio.Lock()):  # one stream each
            stream = self._open.get(worker_url)
            if stream is not None and stream.usable:
                return stream
            refused = self._refused.get(worker_url, -RETRY_UPGRADE)
            if time.monotonic() - refused < RETRY_UPGRADE:
                return None
            socket = await self._connect(worker_url)
            if socket is None:
                self._refused[worker_url] = time.monotonic()
                return None
            self._open[worker_url] = stream = BatchStream(worker_url, socket, self.answer_timeout)
            return stream

    async def _connect(self, worker_url: str) -> aiohttp.ClientWebSocketResponse | None:
        """Open the WebSocket; None if the worker does not serve it."""
        try:
            return await self.session.ws_connect(
                f"{worker_url}/batch",
                max_msg_size=batch.MAX_STREAM_MESSAGE,
                compress=0,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (400, 404, 405):
                return None
            raise ReplicaError(
                f"{worker_url} refused the batch stream: {exc.status}", status=exc.status
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ReplicaError(
                f"{worker_url}: {type(exc).__name__}: {exc}", unreachable=True
            ) from None

    async def close(self) -> None:
        """Close every stream."""
        for stream in list(self._open.values()):
            await stream.close()
        self._open.clear()
