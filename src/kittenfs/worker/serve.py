"""Serving a blob: every byte sent has been checked first.

- Inline values (in LevelDB) are checked whole against their MD5.
- A file's header and length are checked against the blob's metadata; then, in format 2,
  every block a read covers is checked against its digest just before it is sent (format
  1 has no block digests: the whole value is checked against its MD5 first).  The first
  ``verify_max`` bytes of a read are checked before the response starts, so a bad block
  there still lets the worker answer otherwise; a bad block later can only cut the
  response, which the client (or the master, streaming) completes from another replica.
- A blob this worker lacks, or finds damaged before the response starts, sends a client
  that came with a link from the master back along the link's fallback (302), so the read
  goes on at another replica; without a fallback the answer is 404 or 500.

Damage found by a read is logged and reported to the master, which repairs it.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web

from ..httputil import (
    HTTPProblem,
    ResponseAborted,
    etag,
    etag_matches,
    head_response,
    parse_range,
    range_asked,
)
from ..limits import LIMITS
from ..records import BlobMeta
from ..server import BUDGET
from ..streaming import SEND_BUFFER, Sender
from .blobstore import BLOCK_SIZE, BlobFile, BlobStore, CorruptBlob, read_checked

log = logging.getLogger("kittenfs.worker")

#: Bytes one checked stream may hold: the block being sent, the next one being read, and
#: the connection's send buffer.
STREAM_BYTES = 2 * BLOCK_SIZE + SEND_BUFFER

#: The worker's blob store.
STORE = web.AppKey("store", BlobStore)


async def get_blob(request: web.Request, blob: str, fallback: str | None) -> web.StreamResponse:
    """GET/HEAD /blob/<id>: the value, a single byte range of it (206), or 304."""
    store = request.app[STORE]
    meta = store.meta(blob)
    if meta is None:
        return _cannot_serve(blob, fallback, HTTPProblem(404, "not_found", f"no blob {blob}"))
    headers = {"ETag": etag(meta.md5), "Content-Md5": meta.md5, "Accept-Ranges": "bytes",
               "Cache-Control": "public, max-age=31536000, immutable",
               "Content-Type": "application/octet-stream"}
    if etag_matches(request.headers.get("If-None-Match"), meta.md5):
        return web.Response(status=304, headers=headers)
    first, last, status = 0, meta.size - 1, 200
    if (asked := range_asked(request.headers)) is not None:
        first, last = parse_range(asked, meta.size)
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{meta.size}"
    count = last - first + 1
    try:
        if meta.inline:
            value = store.read_inline(blob, meta)[first:last + 1]
            if request.method == "HEAD":
                return head_response(status, headers, count)
            return web.Response(status=status, headers=headers, body=value)
        where = store.locate_file(blob, meta)
        if request.method == "HEAD":
            return head_response(status, headers, count)
        await asyncio.to_thread(_check_span, where, first, min(count, store.verify_max))
    except CorruptBlob as exc:
        _damaged(request, blob, meta, exc)
        return _cannot_serve(blob, fallback, HTTPProblem(500, "corrupt", str(exc)))
    return await _stream(request, status, headers, where, first, count, meta)


def _cannot_serve(blob: str, fallback: str | None, problem: HTTPProblem) -> web.Response:
    """Send the client back along its link's fallback, or answer ``problem``."""
    if fallback is None:
        raise problem
    log.info("blob %s: %s; sending the client back to the master", blob, problem.error)
    return web.Response(status=302, headers={"Location": fallback,
                                             "X-Kfs-Error": problem.error})


def _damaged(request: web.Request, blob: str, meta: BlobMeta, exc: CorruptBlob) -> None:
    log.error("corrupt blob %s (key %r): %s", blob, meta.key, exc)
    request.app[REPORT](meta)


def _check_span(where: BlobFile, first: int, count: int) -> None:
    """Check ``count`` bytes from ``first`` (blocking); raise CorruptBlob if any is bad."""
    for _ in read_checked(where, first, count):
        pass


async def _stream(request: web.Request, status: int, headers: dict[str, str],
                  where: BlobFile, first: int, count: int, meta: BlobMeta) -> web.StreamResponse:
    """Send ``count`` checked bytes from ``first``, reading the next block while the last
    one goes out; a block that fails its check cuts the response."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = count
    sender = Sender(request, response, request.app[LIMITS].send_timeout)
    pieces = read_checked(where, first, count)
    async with request.app[BUDGET].reserve(STREAM_BYTES):
        await sender.start()
        try:
            upcoming = asyncio.ensure_future(asyncio.to_thread(_next, pieces))
            while (piece := await upcoming) is not None:
                upcoming = asyncio.ensure_future(asyncio.to_thread(_next, pieces))
                await sender.write(piece)
        except CorruptBlob as exc:
            _damaged(request, where.path.name, meta, exc)
            raise ResponseAborted(f"cut after {sender.sent} bytes: {exc}") from None
        finally:
            upcoming.cancel()
        await sender.finish()
    return response


def _next(pieces: Iterator[bytes]) -> bytes | None:
    return next(pieces, None)


class ReportOnce:
    """Reports each corrupt blob to the master at most once a minute, in the background."""

    def __init__(self, send: Callable[[list[dict[str, str]]], Awaitable[None]]) -> None:
        self.send = send
        self._sent: dict[tuple[str, str], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, meta: BlobMeta) -> None:
        now = time.monotonic()
        if now - self._sent.get((meta.key, meta.version), float("-inf")) < 60:
            return
        if len(self._sent) > 10_000:
            self._sent.clear()
        self._sent[(meta.key, meta.version)] = now
        task = asyncio.ensure_future(self._send(meta))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, meta: BlobMeta) -> None:
        try:
            await self.send([{"key": meta.key, "version": meta.version}])
        except Exception as exc:  # noqa: BLE001 - the scrub finds it again
            log.warning("could not report a corrupt blob to the master: %s", exc)


#: Tells the master of corrupt blobs that reads find.
REPORT = web.AppKey("report_corrupt", ReportOnce)
