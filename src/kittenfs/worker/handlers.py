"""HTTP handlers of a worker: the blob API the master and redirected clients use.

``/blob/<id>`` is immutable: one id names one version of one key, so a GET of it may be
cached forever, and a PUT of other bytes to an id that is held is refused (409).  Reads
check every byte before it is sent (serve.py); guard.py says who may ask what.
"""

import asyncio
import errno
import functools
import logging
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web

from .. import batch
from ..httputil import (
    HTTPProblem,
)
from ..keys import InvalidKey, decode_key
from ..limits import body_chunks, read_body
from ..metrics import Metrics
from ..placement import blob_id, is_blob_id
from ..records import MAX_META_FRAME, BlobListing, Meta, MetaTooLarge, RecordError, split_meta_frame
from ..server import METRICS
from ..streaming import one_chunk
from .batch_stream import serve_stream
from .blobstore import BlobExists, BlobStore, CorruptBlob, SizeMismatch
from .guard import GUARD
from .scrub import ScrubCounts
from .serve import STORE, get_blob

log = logging.getLogger("kittenfs.worker")

#: Chunk size for reading upload bodies.
READ_CHUNK = 256 * 1024
#: What ``GET /health`` says of the worker: its id, index, cluster and counts, read anew.
DESCRIBE: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("describe")


def _store(request: web.Request) -> BlobStore:
    return request.app[STORE]


def route_of(path: str) -> str:
    """Name a worker request's route, coarsely (never a blob id)."""
    for prefix, route in (("/blob/", "blob"), ("/check/", "check")):
        if path.startswith(prefix):
            return route
    return path[1:] if path in ("/health", "/metrics", "/blobs", "/batch") else "other"


def worker_metrics(store: BlobStore, scrubbed: ScrubCounts) -> Metrics:
    """Return a worker's metrics: what its store holds, the disk it is on (statvfs at each
    scrape: a few microseconds) and what the scrub found."""
    metrics = Metrics("worker", route_of)
    metrics.gauge("kittenfs_blobs", "blobs held", lambda: store.key_count)
    metrics.gauge("kittenfs_blob_bytes", "bytes of values held", lambda: store.bytes_used)
    metrics.gauge(
        "kittenfs_disk_size_bytes",
        "size of the file system of the data directory",
        lambda: shutil.disk_usage(store.root).total,
    )
    metrics.gauge(
        "kittenfs_disk_free_bytes",
        "bytes free (to unprivileged users) on the file system of the data directory",
        lambda: shutil.disk_usage(store.root).free,
    )
    metrics.counter(
        "kittenfs_scrub_checked_blobs", "blobs the scrub read", lambda: scrubbed.checked
    )
    metrics.counter(
        "kittenfs_scrub_corrupt_blobs", "corrupt blobs the scrub found", lambda: scrubbed.corrupt
    )
    return metrics


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route every request of a worker, once its sender may ask it (guard.py)."""
    path = request.path
    if path == "/metrics" and request.method == "GET":
        return await request.app[METRICS].handle(request)
    if path == "/health":
        return web.json_response({"status": "ok", "role": "worker", **request.app[DESCRIBE]()})
    guard = request.app[GUARD]
    if path.startswith("/blob/") and request.method in ("GET", "HEAD"):
        blob = _blob_id(path[len("/blob/") :])
        return await get_blob(request, blob, guard.read(request, blob))
    guard.require_member(request)
    if path == "/blobs" and request.method == "GET":
        return list_blobs(request)
    if path.startswith("/check/") and request.method == "GET":
        return await check_blob(request, path[len("/check/") :])
    if path == "/batch":
        if request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await serve_stream(request, functools.partial(apply_ops, _store(request)))
        if request.method != "POST":
            raise HTTPProblem(
                405, "method_not_allowed", "/batch accepts POST, or GET upgraded", Allow="POST"
            )
        return await post_batch(request)
    if not path.startswith("/blob/"):
        raise HTTPProblem(404, "no_such_route", f"{path} is not a worker route")
    blob = _blob_id(path[len("/blob/") :])
    if request.method == "PUT":
        return await put_blob(request, blob)
    if request.method == "DELETE":
        if not await _store(request).delete(blob):
            raise HTTPProblem(404, "not_found", f"no blob {blob}")
        return web.Response(status=204)
    raise HTTPProblem(
        405,
        "method_not_allowed",
        "blobs accept GET, HEAD, PUT, DELETE",
        Allow="GET, HEAD, PUT, DELETE",
    )


def _blob_id(text: str) -> str:
    if not is_blob_id(text):
        raise HTTPProblem(400, "bad_blob_id", f"{text!r} is not a blob id")
    return text


async def put_blob(request: web.Request, blob: str) -> web.Response:
    """PUT /blob/<id> with X-Kfs-Key and X-Kfs-Version: 201 {size, md5} once durable.

    With ``X-Kfs-Meta: trailer`` the body is the value, then the frame of its metadata
    (records.meta_frame), and ``X-Kfs-Size`` (optional) gives the value's size.
    """
    key = _header_key(request.headers.get("X-Kfs-Key", ""))
    version = request.headers.get("X-Kfs-Version", "")
    if blob_id(key, version) != blob:
        raise HTTPProblem(400, "bad_blob_id", "the id does not match X-Kfs-Key and X-Kfs-Version")
    chunks = body_chunks(request, READ_CHUNK)
    size = request.content_length
    meta: Meta | Callable[[], Meta] = ()
    mode = request.headers.get("X-Kfs-Meta")
    if mode is not None:
        if mode != "trailer":
            raise HTTPProblem(400, "bad_meta", "X-Kfs-Meta must be 'trailer'")
        trailer = Trailer(chunks)
        chunks, meta, size = trailer.value(), trailer.meta, _size(request)
    with _storing(blob):
        stored = await _store(request).put(blob, key, version, chunks, size, meta)
    return web.json_response({"size": stored.size, "md5": stored.md5}, status=201)


def _size(request: web.Request) -> int | None:
    text = request.headers.get("X-Kfs-Size")
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise HTTPProblem(400, "bad_size", "X-Kfs-Size must be a byte count")
    return int(text)


class Trailer:
    """An upload body that ends in its value's metadata frame (records.meta_frame): gives the
    value's bytes, holding the last MAX_META_FRAME bytes back until the body has ended."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks
        self._meta: Meta | None = None

    async def value(self) -> AsyncIterator[bytes]:
        """Yield the value's bytes; raise RecordError if the body does not end in a frame."""
        tail = b""
        async for chunk in self.chunks:
            if len(chunk) >= MAX_META_FRAME:
                if tail:
                    yield tail
                yield chunk[:-MAX_META_FRAME]
                tail = chunk[-MAX_META_FRAME:]
                continue
            tail += chunk
            if len(tail) > MAX_META_FRAME:
                yield tail[:-MAX_META_FRAME]
                tail = tail[-MAX_META_FRAME:]
        rest, self._meta = split_meta_frame(tail)
        if rest:
            yield rest

    def meta(self) -> Meta:
        """Return the metadata, once ``value`` has given every byte."""
        if self._meta is None:
            raise RecordError("the body's metadata frame has not been read")
        return self._meta


def _header_key(header: str) -> str:
    """Return the key an X-Kfs-Key header names (percent-encoded UTF-8); 400 otherwise."""
    if not header.isascii():
        raise HTTPProblem(400, "bad_key", "X-Kfs-Key must be percent-encoded ASCII")
    try:
        return decode_key(unquote_to_bytes(header))
    except InvalidKey as exc:
        raise HTTPProblem(400, "bad_key", f"X-Kfs-Key: {exc}") from None


@contextmanager
def _storing(blob: str) -> Iterator[None]:
    """Map the failures of storing a blob to their HTTP problems (a full disk is a 507)."""
    try:
        yield
    except SizeMismatch as exc:
        raise HTTPProblem(400, "size_mismatch", str(exc)) from None
    except MetaTooLarge as exc:
        raise HTTPProblem(400, "meta_too_large", str(exc)) from None
    except RecordError as exc:
        raise HTTPProblem(400, "bad_meta", str(exc)) from None
    except BlobExists as exc:
        raise HTTPProblem(409, "blob_exists", str(exc)) from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.error("disk full storing %s: %s", blob, exc)
            raise HTTPProblem(507, "disk_full", str(exc)) from None
        raise


async def post_batch(request: web.Request) -> web.Response:
    """POST /batch: apply small puts and deletes together (kittenfs/batch.py has the format).

    The operations run concurrently, so the blob store commits them with one fsync; each
    gets its own result, and one failing does not fail the others.
    """
    if (request.content_length or 0) > batch.MAX_BODY_BYTES:
        raise HTTPProblem(413, "batch_too_large", "the batch is over the size limit")
    try:
        ops = batch.decode(await read_body(request))
    except batch.BadBatch as exc:
        raise HTTPProblem(400, "bad_batch", str(exc)) from None
    return web.json_response({"results": await apply_ops(_store(request), ops)})


async def apply_ops(store: BlobStore, ops: list[batch.Op]) -> list[dict[str, object]]:
    """Apply a batch's operations concurrently (one fsync commits them); return one result
    per operation, in order, each a success or a failure of its own."""
    return await asyncio.gather(*(_apply(store, op) for op in ops))


async def _apply(store: BlobStore, op: batch.Op) -> dict[str, object]:
    """Apply one operation of a batch; return its result, a failure included."""
    try:
        with _storing(op.blob):
            if isinstance(op, batch.DeleteOp):
                return {"status": 204 if await store.delete(op.blob) else 404}
            meta = await store.put(
                op.blob, op.key, op.version, one_chunk(op.value), len(op.value), op.meta
            )
            return {"status": 201, "size": meta.size, "md5": meta.md5}
    except HTTPProblem as problem:
        return {"status": problem.status, "error": problem.error, "message": problem.detail}
    except OSError as exc:
        log.error("batch op on %s failed: %s", op.blob, exc)
        return {"status": 500, "error": "io_error", "message": str(exc)}


async def check_blob(request: web.Request, blob: str) -> web.Response:
    """GET /check/<id>: read every byte of a blob and say whether it matches its metadata.

    Used by repair: 200 {"ok": true, size, md5}, 200 {"ok": false, "problem": ...} for a
    corrupt blob (the worker holds it, but it must not be served), 404 if it is not held.
    """
    if not is_blob_id(blob):
        raise HTTPProblem(400, "bad_blob_id", f"{blob!r} is not a blob id")
    store = _store(request)
    try:
        meta = await asyncio.to_thread(store.check, blob)
    except CorruptBlob as exc:
        log.error("check of blob %s found it corrupt: %s", blob, exc)
        return web.json_response({"blob": blob, "ok": False, "problem": str(exc)})
    if meta is None:
        raise HTTPProblem(404, "not_found", f"no blob {blob}")
    return web.json_response({"blob": blob, "ok": True, "size": meta.size, "md5": meta.md5})


def list_blobs(request: web.Request) -> web.Response:
    """GET /blobs?start=&limit=: the blobs held, in id order, a page at a time."""
    store = _store(request)
    start = request.query.get("start", "")
    if not start.isascii():
        raise HTTPProblem(400, "bad_parameter", "start must be a blob id")
    text = request.query.get("limit", "1000")
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or not 1 <= int(text) <= 10000:
        raise HTTPProblem(400, "bad_parameter", "limit must be 1..10000")
    limit = int(text)
    blobs: list[dict[str, Any]] = []
    for meta, blob in store.iter_meta_from(start):
        if len(blobs) == limit:
            return web.json_response({"blobs": blobs, "next": blob})
        blobs.append(BlobListing.of(blob, meta).to_json())
    return web.json_response({"blobs": blobs, "next": ""})
