"""The batch stream: the master's small puts and deletes as messages on one WebSocket.

``POST /batch`` costs each batch a whole HTTP exchange on both sides: a signed request, the
middlewares, a response; on a small PUT that was more of a worker's CPU than storing the
value (docs/performance.md).  So a master opens ``GET /batch`` as a WebSocket once per
worker, signed at the upgrade like any member's request, and sends each batch as one binary
message: an 8-byte id, then the body ``POST /batch`` takes (kittenfs/batch.py).  The worker
applies it as ``POST /batch`` does and answers with one binary message: the same id, then
the JSON ``POST /batch`` answers (``{"results": [...]}``), or ``{"error": "bad_batch",
"message": ...}`` for a batch that does not follow the format (``"internal"`` for a
failure of the worker's own, where ``POST /batch`` answers 500).

The batches of one stream are applied concurrently, so that one fsync commits several;
at most STREAM_BATCHES at a time (reading pauses beyond), and answers may leave in any
order: the id pairs them.  A message too short to carry an id, or a text message, closes
the stream (1003).  docs/api.md ("Worker API") is the contract.
"""

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable

from aiohttp import WSCloseCode, WSMsgType, web

from .. import batch
from ..metrics import Metrics
from ..server import METRICS

log = logging.getLogger("kittenfs.worker")

#: Applies a batch's operations; returns one result per operation, in order.
Apply = Callable[[list[batch.Op]], Awaitable[list[dict[str, object]]]]

#: Batches of one stream applied at a time.
STREAM_BATCHES = 8


class OpenStreams:
    """The streams open on a worker, closed when it shuts down (a WebSocket handler would
    otherwise hold the shutdown until the master hangs up)."""

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    def add(self, stream: web.WebSocketResponse) -> None:
        self._streams.add(stream)

    async def close(self, app: web.Application | None = None) -> None:
        """Close every open stream (an ``on_shutdown`` handler, hence ``app``)."""
        for stream in list(self._streams):
            await stream.close(code=WSCloseCode.GOING_AWAY, message=b"worker stopping")


OPEN_STREAMS = web.AppKey("streams", OpenStreams)


def track_streams(app: web.Application) -> None:
    """Keep the app's open streams, and close them when it shuts down."""
    app[OPEN_STREAMS] = OpenStreams()
    app.on_shutdown.append(app[OPEN_STREAMS].close)


async def serve_stream(request: web.Request, apply: Apply) -> web.WebSocketResponse:
    """GET /batch, upgraded: apply each batch the master sends with ``apply`` and answer it,
    until the master (or this worker's shutdown) closes the stream."""
    stream = web.WebSocketResponse(max_msg_size=batch.MAX_STREAM_MESSAGE, compress=False)
    await stream.prepare(request)
    request.app[OPEN_STREAMS].add(stream)
    metrics = request.app[METRICS]
    slots = asyncio.Semaphore(STREAM_BATCHES)
    answering: set[asyncio.Task[None]] = set()
    try:
        async for message in stream:
            if message.type != WSMsgType.BINARY or len(message.data) < batch.STREAM_ID_BYTES:
                await stream.close(
                    code=WSCloseCode.UNSUPPORTED_DATA,
                    message=b"each message is an 8-byte id and a batch",
                )
                break
            await slots.acquire()
            task = asyncio.create_task(_answer(stream, message.data, apply, metrics))
            answering.add(task)
            task.add_done_callback(answering.discard)
            task.add_done_callback(lambda _: slots.release())
    finally:
        if answering:  # a batch under way finishes (its writes are durable or failed)
            await asyncio.wait(answering)
    return stream


async def _answer(
    stream: web.WebSocketResponse, message: bytes, apply: Apply, metrics: Metrics
) -> None:
    """Apply one batch and answer it; count it as a ``STREAM`` request of route ``batch``."""
    started = time.perf_counter()
    try:
        ops = batch.decode(message[batch.STREAM_ID_BYTES :])
        answer: dict[str, object] = {"results": await apply(ops)}
        status = 200
    except batch.BadBatch as exc:
        answer, status = {"error": "bad_batch", "message": str(exc)}, 400
    except Exception as exc:  # answered at once, as POST /batch's 500 is, not left to time out
        log.exception("batch failed")
        answer, status = {"error": "internal", "message": f"{type(exc).__name__}: {exc}"}, 500
    reply = message[: batch.STREAM_ID_BYTES] + json.dumps(answer, separators=(",", ":")).encode()
    elapsed = time.perf_counter() - started
    metrics.record("batch", "STREAM", status, elapsed, len(message), len(reply))
    if stream.closed:
        return  # the master has gone: it fails the batch, and may send it again
    try:
        await stream.send_bytes(reply)
    except ConnectionError as exc:
        log.info("batch stream closed before an answer could be sent: %s", exc)
