"""Serving a blob: every byte sent has been checked first.

- Inline values (in LevelDB) are checked whole against their MD5.
- A file's header and length are checked against the blob's metadata; then, in format 2,
  every block a read covers is checked against its digest just before it is sent (format
  1 has no block digests: the whole value is checked against its MD5 first).  The first
  ``verify_max`` bytes of a read are checked before the response starts, so a bad block
  there still lets the worker answer otherwise; a bad block later can only cut the
  response, which the client (or the master, streaming) completes from another replica.
- A file goes out in pieces, each read into memory, checked and written from there; the
  next piece is taken while the last goes out: on the event loop if its pages are cached,
  else in a thread.  (Not with sendfile: the kernel would send the pages as they are then,
  and a slow reader makes "then" minutes after the check; docs/performance.md.)
- A blob this worker lacks, or finds damaged before the response starts, sends a client
  that came with a link from the master back along the link's fallback (302), so the read
  goes on at another replica; without a fallback the answer is 404 or 500.

Damage found by a read is logged and reported to the master, which repairs it.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

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
from ..placement import blob_id
from ..records import BlobMeta
from ..server import BUDGET
from ..streaming import Sender
from .blobstore import (
    READ_PIECE,
    BlobFile,
    BlobStore,
    CheckedReader,
    CorruptBlob,
    NotCached,
    Piece,
)
from .guard import GUARD

log = logging.getLogger("kittenfs.worker")

#: Bytes one checked stream may hold: the piece being sent, the transport's copy of what the
#: client has not taken yet (up to a piece), and the next piece being read.
STREAM_BYTES = 3 * READ_PIECE
#: Seconds a value read whole without fault is taken as checked by the next reads' pre-check
#: (they still check every block they send).
CHECKED_FOR = 60.0

#: The worker's blob store.
STORE = web.AppKey("store", BlobStore)


async def get_blob(request: web.Request, blob: str, fallback: str | None) -> web.StreamResponse:
    """GET/HEAD /blob/<id>: the value, a single byte range of it (206), or 304."""
    store = request.app[STORE]
    meta = store.meta(blob)
    if meta is None:
        return _cannot_serve(blob, fallback, HTTPProblem(404, "not_found", f"no blob {blob}"))
    headers = {
        "ETag": etag(meta.md5),
        "Content-Md5": meta.md5,
        "Accept-Ranges": "bytes",
        "Cache-Control": "public, max-age=31536000, immutable",
        "Content-Type": "application/octet-stream",
    }
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
            value = store.read_inline(blob, meta)[first : last + 1]
            if request.method == "HEAD":
                return head_response(status, headers, count)
            return web.Response(status=status, headers=headers, body=value)
        where = store.locate_file(blob, meta)
    except CorruptBlob as exc:
        _damaged(request, blob, meta, exc)
        return _cannot_serve(blob, fallback, HTTPProblem(500, "corrupt", str(exc)))
    if request.method == "HEAD":
        return head_response(status, headers, count)
    client = None if request.app[GUARD].is_member(request) else request.remote or "?"
    async with request.app[BUDGET].reserve(STREAM_BYTES, client):
        steps: _Ahead[Piece] | None = None
        try:
            try:
                await _check_first(request, store, where, first, count)
                reader = CheckedReader(where, first, count)
                steps = _Ahead(reader, reader.read)
                head = await steps.next()  # checked before the response starts
                if reader.damage_ahead is not None:  # a bad block in the first piece
                    raise reader.damage_ahead
            except CorruptBlob as exc:
                _damaged(request, blob, meta, exc)
                return _cannot_serve(blob, fallback, HTTPProblem(500, "corrupt", str(exc)))
            response = await _stream(request, status, headers, steps, head, count, meta)
        finally:
            if steps is not None:
                steps.close()
    if first == 0 and count == meta.size:
        request.app[CHECKED].note(blob)
    return response


async def _check_first(
    request: web.Request, store: BlobStore, where: BlobFile, first: int, count: int
) -> None:
    """Check the first ``verify_max`` bytes of a read before its response starts (unless the
    blob was read whole without fault lately); raise CorruptBlob if any block is bad."""
    checked = request.app[CHECKED]
    if checked.recently(where.path.name):
        return
    reader = CheckedReader(where, first, min(count, store.verify_max))
    steps = _Ahead(reader, reader.check_next if where.header.block_size else reader.read)
    try:
        while await steps.next() is not None:
            pass
    finally:
        steps.close()
    if first == 0 and count == where.size <= store.verify_max:
        checked.note(where.path.name)  # every block of the value was just checked


def _cannot_serve(blob: str, fallback: str | None, problem: HTTPProblem) -> web.Response:
    """Send the client back along its link's fallback, or answer ``problem``."""
    if fallback is None:
        raise problem
    log.info("blob %s: %s; sending the client back to the master", blob, problem.error)
    return web.Response(status=302, headers={"Location": fallback, "X-Kfs-Error": problem.error})


def _blob_of(meta: BlobMeta) -> str:
    """Return the id of the blob ``meta`` describes."""
    return blob_id(meta.key, meta.version)


def _damaged(request: web.Request, blob: str, meta: BlobMeta, exc: CorruptBlob) -> None:
    log.error("corrupt blob %s (key %r): %s", blob, meta.key, exc)
    request.app[CHECKED].forget(blob)
    request.app[REPORT](meta)


#: One step of a read: a checked piece of the value (``_stream``), or where a checked piece
#: lies in the file (``_check_first``, which keeps no bytes).
Step = TypeVar("Step")


async def _stream(
    request: web.Request,
    status: int,
    headers: dict[str, str],
    steps: "_Ahead[Piece]",
    head: Piece | None,
    count: int,
    meta: BlobMeta,
) -> web.StreamResponse:
    """Send ``count`` checked bytes, ``head`` first, then the rest of ``steps``, taking the
    next piece while the last goes out; a block that fails its check cuts the response."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = count
    sender = Sender(request, response, request.app[LIMITS].send_timeout)
    await sender.start()
    try:
        piece = head
        while piece is not None:
            steps.read_ahead()
            await sender.write(piece)
            piece = await steps.next()
    except CorruptBlob as exc:
        _damaged(request, _blob_of(meta), meta, exc)
        raise ResponseAborted(f"cut after {sender.sent} bytes: {exc}") from None
    await sender.finish()
    return response


class _Ahead(Generic[Step]):
    """The checked steps of one read, one taken ahead while the last goes out: on the event
    loop while they are in the page cache, else in a thread (CheckedReader says why).
    Owns the reader: ``close`` closes it once no thread uses it."""

    def __init__(self, reader: CheckedReader, step: Callable[[bool], Step | None]) -> None:
        self._reader = reader
        self._step = step
        self._ahead: asyncio.Future[Step | None] | None = None

    def read_ahead(self) -> None:
        """Start taking the next step, unless that is under way."""
        if self._ahead is not None:
            return
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Step | None] = loop.create_future()
        try:
            ready.set_result(self._step(True))
        except NotCached:
            self._ahead = loop.run_in_executor(None, self._step, False)
            return
        except CorruptBlob as exc:
            ready.set_exception(exc)
        self._ahead = ready

    async def next(self) -> Step | None:
        """Return the next checked step (None after the last); CorruptBlob if it is bad."""
        self.read_ahead()
        ahead = self._ahead
        assert ahead is not None
        # Shielded: a cancelled request must not leave a thread reading a closed file.
        step = await asyncio.shield(ahead)
        self._ahead = None
        return step

    def close(self) -> None:
        """Close the file, once a step in a thread (if one is under way) is done with it."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            self._reader.close()
            return
        ahead.add_done_callback(_retrieve)
        ahead.add_done_callback(lambda _: self._reader.close())


def _retrieve(done: "asyncio.Future[Any]") -> None:
    """Take the outcome of a step nobody awaits any more (no 'never retrieved' warning)."""
    if not done.cancelled():
        done.exception()


class RecentlyChecked:
    """Blobs read whole without fault in the last CHECKED_FOR seconds (at most ``size``): a
    hot value need not be read twice per request, once to check it before the response
    starts and once to send it.  Every block sent is checked regardless; what a blob found
    here forgoes is only the chance to send the client elsewhere if damage appeared since."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._at: dict[str, float] = {}

    def note(self, blob: str) -> None:
        self._at.pop(blob, None)
        self._at[blob] = time.monotonic()
        if len(self._at) > self.size:
            del self._at[next(iter(self._at))]

    def recently(self, blob: str) -> bool:
        at = self._at.get(blob)
        return at is not None and time.monotonic() - at < CHECKED_FOR

    def forget(self, blob: str) -> None:
        self._at.pop(blob, None)


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
        except Exception as exc:
            log.warning("could not report a corrupt blob to the master: %s", exc)


#: Tells the master of corrupt blobs that reads find.
REPORT = web.AppKey("report_corrupt", ReportOnce)
#: The blobs read whole without fault lately.
CHECKED = web.AppKey("recently_checked", RecentlyChecked)
