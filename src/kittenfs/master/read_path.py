"""The read path: GET and HEAD of a key, from the cache, by redirect, or streamed through.

1. The hot-value cache holds recently used small values with their live record; a hit is
   answered at once (cache.py says why that is correct).
2. Otherwise the index record: 404, 304 (If-None-Match), or HEAD from the record alone.
3. A small value is read whole through the cache (read-through), checked against its MD5.
4. Otherwise a replica is chosen among those that are up and not known damaged, nor already
   failed for this very read, and the client is either
   - redirected (302) to it with a link signed by the master (workers serve blobs only on
     such links) that carries a **fallback**: if that worker cannot serve the blob (it lost
     it, or a block fails its checksum before the response starts), it sends the client
     back here with a signed link naming it, and the next read avoids it; or
   - served through the master (``?direct``, ``/get/<key>``), with the next replica taking
     over where the last one stopped if one fails part way (a Range request for the rest).

A worker never sends a byte it has not checked against the blob's checksums (docs/format.md);
a bad block part way through cuts the stream, which the master then completes from another
replica.  Every replica that failed a read is checked, and repaired if damaged (damage.py).
"""

import hashlib
import random
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from ..errors import NoGoodReplica, ReplicaUnavailable
from ..httputil import (
    ResponseAborted,
    etag,
    etag_matches,
    head_response,
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
from .index import Space
from .state import MasterState

#: Bytes read from a replica at a time when streaming through the master.
PROXY_CHUNK = 64 * 1024
#: Bytes one stream through the master may hold: the replica's read buffer (twice its
#: limit, before aiohttp pauses it), a piece in hand, and the client's send buffer.
PROXY_STREAM_BYTES = 2 * replica_io.READ_BUFFER + PROXY_CHUNK + SEND_BUFFER
#: Seconds a redirect's links stay valid: the client follows them at once; the margin is
#: for clocks that differ between the master and its workers.
LINK_SECONDS = 300.0

_PASSED_HEADERS = ("Content-Type", "Accept-Ranges")


def value_headers(record: IndexRecord) -> dict[str, str]:
    """Return the headers every answer about a value carries."""
    return {
        "ETag": etag(record.md5),
        "Content-Md5": record.md5,
        "X-Kfs-Size": str(record.size),
        "Cache-Control": "no-cache",
    }


def not_found() -> web.Response:
    """The 404 of a missing key: empty body, so Content-Length is 0 as clients expect."""
    return head_response(404, {"X-Kfs-Error": "not_found"}, 0)


async def read(
    request: web.Request, state: MasterState, key: str, caller: Caller, direct: bool
) -> web.StreamResponse:
    """Answer a GET or HEAD of ``key`` (``direct``: stream it through the master)."""
    cache = state.store.cache
    hit = cache.get(key)
    record, value = hit if hit is not None else (await state.index.get(Space.LIVE, key), None)
    if record is None:
        return not_found()
    if caller.exclude:
        state.damage.suspect(record, caller.exclude)
    headers = value_headers(record)
    if etag_matches(request.headers.get("If-None-Match"), record.md5):
        return web.Response(status=304, headers=headers)
    if request.method == "HEAD":
        return head_response(200, headers, record.size)
    if cache.holds(record.size) and range_asked(request.headers) is None:
        if value is None:
            cache.missed()
            with cache.ticket(key) as ticket:
                value = await _read_small(state, record, caller)
                if await state.index.get(Space.LIVE, key) == record:  # not replaced meanwhile
                    cache.fill(ticket, record, value)
        return web.Response(
            body=value, headers={**headers, "Content-Type": "application/octet-stream"}
        )
    replicas = _candidates(state, record, caller)
    if direct:
        return await _proxy(request, state, record, replicas)
    return _redirect(request, state, record, random.choice(replicas), caller)


def _candidates(state: MasterState, record: IndexRecord, caller: Caller) -> list[int]:
    """Return the replicas a read may use, in a random order: up, and not one that already
    failed this read; those not known damaged first (if there are none, the damaged ones:
    a copy with one bad block still serves the rest).  Raise NoGoodReplica or
    ReplicaUnavailable if there is none."""
    usable = [i for i in state.membership.live_replicas(record.replicas) if i not in caller.exclude]
    damaged = state.damage.of(record)
    if usable:
        return [i for i in usable if i not in damaged] or usable
    if not any(state.membership.is_up(i) for i in record.replicas):
        raise ReplicaUnavailable(f"every replica of {record.key!r} is down", "no_live_replica")
    raise NoGoodReplica(
        f"no live replica of {record.key!r} could serve "
        f"it (tried: {sorted(caller.exclude)}); damaged copies are repaired"
    )


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


async def _read_small(state: MasterState, record: IndexRecord, caller: Caller) -> bytes:
    """Read a small value whole from a replica whose bytes match its MD5 (for the cache)."""
    failures: list[str] = []
    for index in _candidates(state, record, caller):
        url = replica_io.blob_url(state.membership.url(index), _blob(record))
        try:
            async with state.session.get(url) as upstream:
                if upstream.status != 200:
                    failures.append(f"worker {index}: {upstream.status}")
                    _damaged_if_missing(state, record, index, upstream.status)
                    continue
                value = await upstream.read()
        except (aiohttp.ClientError, OSError) as exc:
            _replica_failed(state, index, exc, failures)
            continue
        if hashlib.md5(value, usedforsecurity=False).hexdigest() == record.md5:
            return value
        failures.append(f"worker {index}: the bytes do not match the MD5")
        state.damage.mark(record, index)
    raise NoGoodReplica("; ".join(failures), "no_replica_served")


def _blob(record: IndexRecord) -> str:
    return blob_id(record.key, record.version)


def _damaged_if_missing(state: MasterState, record: IndexRecord, index: int, status: int) -> None:
    """A replica that answers 404 (lost it) or 500 (corrupt) for a blob is damaged."""
    if status in (404, 500):
        state.damage.mark(record, index)


def _replica_failed(
    state: MasterState, index: int, exc: BaseException, failures: list[str]
) -> None:
    """Record a replica's failure; one that could not be reached counts as down for now."""
    failures.append(f"worker {index}: {exc}")
    if isinstance(exc, (aiohttp.ClientConnectionError, OSError)):
        state.membership.suspect(index, str(exc))


async def _proxy(
    request: web.Request, state: MasterState, record: IndexRecord, replicas: list[int]
) -> web.StreamResponse:
    """Stream a value (or the asked range of it) through the master.

    Replicas are tried in turn; one that fails part way is taken over by the next, from the
    first byte not yet sent, and the round goes on as long as it makes progress (a replica
    with a damaged block early may serve the rest): the value is served whole if every
    block has one good copy.  Only if no replica can go on after the response has begun is
    the connection cut (the client sees a short body, never wrong bytes).
    """
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
    response.content_length = last - first + 1
    if asked is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{record.size}"
    sender = Sender(request, response, request.app[LIMITS].send_timeout)
    failures: list[str] = []
    async with request.app[BUDGET].reserve(PROXY_STREAM_BYTES, request.remote or "?"):
        progress = True
        while progress:  # a replica that failed further back may serve what is left
            progress = False
            for index in replicas:
                before = sender.sent
                try:
                    if await _relay(state, record, index, first, last, sender, failures):
                        await sender.finish()
                        return response
                except (aiohttp.ClientError, OSError) as exc:
                    _replica_failed(state, index, exc, failures)
                progress |= sender.sent > before
    if not response.prepared:
        raise NoGoodReplica("; ".join(failures), "no_replica_served")
    raise ResponseAborted(f"every replica failed part way: {'; '.join(failures)}")


async def _relay(
    state: MasterState,
    record: IndexRecord,
    index: int,
    first: int,
    last: int,
    sender: Sender,
    failures: list[str],
) -> bool:
    """Send bytes ``first + sender.sent`` .. ``last`` of the value from replica ``index``;
    return True once every one has been sent, False if this replica stopped short."""
    start = first + sender.sent
    whole = start == 0 and last == record.size - 1
    headers = {} if whole else {"Range": f"bytes={start}-{last}"}
    url = replica_io.blob_url(state.membership.url(index), _blob(record))
    async with state.session.get(url, headers=headers) as upstream:
        if upstream.status != (200 if whole else 206):
            failures.append(f"worker {index}: {upstream.status}")
            _damaged_if_missing(state, record, index, upstream.status)
            return False
        if not sender.response.prepared:
            for name in _PASSED_HEADERS:
                if name in upstream.headers:
                    sender.response.headers[name] = upstream.headers[name]
            await sender.start()
        try:
            async for chunk in upstream.content.iter_chunked(PROXY_CHUNK):
                await sender.write(chunk)
        except (aiohttp.ClientError, OSError) as exc:
            # A replica that stops part way cut the stream itself (most often at a block that
            # failed its check): its copy is suspect, the worker is not down.
            failures.append(f"worker {index} stopped after {sender.sent} bytes: {exc}")
            state.damage.suspect(record, (index,))
            return False
    if first + sender.sent != last + 1:
        failures.append(f"worker {index} sent {sender.sent} of {last - first + 1} bytes")
        return False
    return True
