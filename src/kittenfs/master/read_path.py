"""The read path's HTTP side: GET and HEAD of a key, answered from the cache, by redirect, or
streamed through the master.  What to read and from where is decided by reader.py; this
module maps its results to responses.

1. The key's record (reader.find): 404, 304 (If-None-Match), or HEAD from the record alone.
2. A small value is answered whole (reader.value: the cache, or read through).
3. Otherwise the client is either
   - redirected (302) to a replica (reader.choose) with a link signed by the master (workers
     serve blobs only on such links) that carries a **fallback**: if that worker cannot serve
     the blob (it lost it, or a block fails its checksum before the response starts), it
     sends the client back here with a signed link naming it, and the next read avoids it;
   - or served through the master (``?direct``, ``/get/<key>``) from reader.stream, which
     has the next replica take over where the last one stopped if one fails part way.

A worker never sends a byte it has not checked against the blob's checksums (docs/format.md);
a bad block part way through cuts the stream, which the master then completes from another
replica.  Every replica that failed a read is checked, and repaired if damaged (damage.py).
"""

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ..errors import NoGoodReplica
from ..httputil import (
    Reply,
    ResponseAborted,
    etag,
    etag_matches,
    parse_range,
    range_asked,
)
from ..limits import LIMITS
from ..placement import blob_id
from ..records import IndexRecord
from ..server import BUDGET
from ..streaming import SEND_BUFFER, Sender
from . import replica_io
from .access import Caller, link_url
from .reader import Found
from .state import MasterState

#: Bytes one stream through the master may hold: the replica's read buffer (twice its
#: limit, before aiohttp pauses it), a piece in hand, and the client's send buffer.
PROXY_STREAM_BYTES = 2 * replica_io.READ_BUFFER + replica_io.READ_CHUNK + SEND_BUFFER
#: Seconds a redirect's links stay valid: the client follows them at once; the margin is
#: for clocks that differ between the master and its workers.
LINK_SECONDS = 300.0


def value_headers(record: IndexRecord) -> dict[str, str]:
    """Return the headers every answer about a value carries."""
    return {
        "ETag": etag(record.md5),
        "Content-Md5": record.md5,
        "X-Kfs-Size": str(record.size),
        "Cache-Control": "no-cache",
    }


#: The answer for a missing key: empty body, so Content-Length is 0 as clients expect.
NOT_FOUND = Reply(404, {"X-Kfs-Error": "not_found"}, length=0)


async def read(
    request: web.Request, state: MasterState, key: str, caller: Caller, direct: bool
) -> web.StreamResponse:
    """Answer a GET or HEAD of ``key`` (``direct``: stream it through the master)."""
    answered = await answer_whole(
        state,
        request.method,
        key,
        caller,
        request.headers.get("If-None-Match"),
        range_asked(request.headers) is not None,
    )
    if isinstance(answered, Reply):
        return answered.response()
    record = answered.record
    replicas = state.reader.candidates(record, caller.exclude)
    if direct:
        return await _proxy(request, state, record, replicas)
    return _redirect(request, state, record, state.reader.choose(record, caller.exclude), caller)


async def answer_whole(
    state: MasterState,
    method: str,
    key: str,
    caller: Caller,
    if_none_match: str | None,
    ranged: bool,
) -> Reply | Found:
    """Answer a GET or HEAD of ``key`` whole when it can be: 404, 304, a HEAD (from the
    record alone), or a small value (the cache, or read through); otherwise return what was
    found, for the value to be redirected to or streamed.  Both the aiohttp route and the
    front (fast_path.py) answer with this."""
    reader = state.reader
    found = await reader.find(key, caller.exclude)
    if found is None:
        return NOT_FOUND
    record = found.record
    headers = value_headers(record)
    if etag_matches(if_none_match, record.md5):
        return Reply(304, headers)
    if method == "HEAD":
        return Reply(200, headers, length=record.size)
    if not reader.whole_value(found, ranged):
        return found
    value = await reader.value(found, caller.exclude)
    return Reply(200, {**headers, "Content-Type": "application/octet-stream"}, value)


def _redirect(
    request: web.Request, state: MasterState, record: IndexRecord, worker: int, caller: Caller
) -> web.Response:
    """Send the client to ``worker`` with a signed blob link whose fallback, signed for the
    same caller, brings it back here with ``worker`` excluded."""
    raw_path = request.raw_path.split("?", 1)[0]
    params = state.access.sign(
        caller, "GET", record.key, LINK_SECONDS, tuple(sorted({*caller.exclude, worker}))
    )
    fallback = link_url(state.public_url, raw_path, params)
    path = f"/blob/{blob_id(record.key, record.version)}"
    expires = int(time.time() + LINK_SECONDS)
    query: dict[str, Any] = {"kfs-expires": expires, "kfs-fallback": fallback}
    if state.config.cluster_key is not None:
        query["kfs-signature"] = state.config.cluster_key.sign_link(path, expires, fallback)
    location = f"{state.membership.url(worker)}{path}?{urlencode(query)}"
    return web.Response(status=302, headers={**value_headers(record), "Location": location})


async def _proxy(
    request: web.Request, state: MasterState, record: IndexRecord, replicas: list[int]
) -> web.StreamResponse:
    """Stream a value (or the asked range of it) through the master from reader.stream."""
    asked = range_asked(request.headers)
    first, last = parse_range(asked, record.size) if asked is not None else (0, record.size - 1)
    response = web.StreamResponse(
        status=206 if asked is not None else 200,
        headers={
            **value_headers(record),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        },
    )
    if asked is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{record.size}"
    chunks = state.reader.stream(record, first, last, replicas)
    return await send_stream(request, response, last - first + 1, chunks)


async def send_stream(
    request: web.Request,
    response: web.StreamResponse,
    length: int,
    stream: AsyncGenerator[bytes, None],
) -> web.StreamResponse:
    """Send ``length`` bytes from ``stream`` (reader.stream, or the S3 API's reads of an
    object in parts) as the body of ``response``, whose status and headers are set, under
    the process's stream budget.

    The response starts with the first byte; if the stream fails before it (NoGoodReplica),
    the error is raised, and after it the connection is cut (a short body, never wrong
    bytes).
    """
    response.content_length = length
    sender = Sender(request, response, request.app[LIMITS].send_timeout)
    async with request.app[BUDGET].reserve(PROXY_STREAM_BYTES, request.remote or "?"):
        try:
            async with aclosing(stream) as chunks:
                async for chunk in chunks:
                    if not response.prepared:
                        await sender.start()
                    await sender.write(chunk)
        except NoGoodReplica as exc:
            if not response.prepared:
                raise
            raise ResponseAborted(f"every replica failed part way: {exc.detail}") from None
        if not response.prepared:
            await sender.start()
        await sender.finish()
    return response
