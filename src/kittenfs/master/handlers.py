"""HTTP handlers of the master: parse the request, call one operation, map the result.

Routing is by hand because a key may be any path: reserved paths (``/health``, ``/_*``,
``/gets``, ``/clear`` and the seed routes ``/put/``, ``/get/``, ``/delete/``) are matched
first, and every other path is a key.  docs/api.md is the contract.
"""

import hashlib
import logging
import random
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from ..httputil import (
    HTTPProblem,
    ResponseAborted,
    etag,
    etag_matches,
    head_response,
    json_object,
    range_asked,
)
from ..keys import MAX_KEY_BYTES, InvalidKey, key_from_raw_path
from ..limits import body_chunks, paced
from ..metrics import Metrics
from ..placement import blob_id
from ..records import IndexRecord
from . import admin, replica_io
from .index import Space
from .state import MasterState

#: Chunk size for reading request bodies.
READ_CHUNK = 256 * 1024
#: Default and largest page of a listing.
DEFAULT_LIMIT, MAX_LIMIT = 1000, 10000

KEY_METHODS = "GET, HEAD, PUT, DELETE, UNLINK"

log = logging.getLogger("kittenfs.master")


def _state(request: web.Request) -> MasterState:
    state: MasterState = request.app["state"]
    return state


def _key(raw_path: str) -> str:
    try:
        return key_from_raw_path(raw_path)
    except InvalidKey as exc:
        raise HTTPProblem(400, "bad_key", str(exc)) from None


def _not_found() -> web.Response:
    """The 404 of a missing key: empty body, so Content-Length is 0 as clients expect."""
    return head_response(404, {"X-Kfs-Error": "not_found"}, 0)


def _value_headers(record: IndexRecord) -> dict[str, str]:
    return {"ETag": etag(record.md5), "Content-Md5": record.md5,
            "X-Kfs-Size": str(record.size), "Cache-Control": "no-cache"}


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route every request of the master."""
    raw = request.raw_path.split("?", 1)[0]
    method = request.method
    if method == "GET" and ("list" in request.query or "unlinked" in request.query):
        return await list_keys(request, _key(raw or "/"))
    route = _ROUTES.get(raw)
    if route is not None:
        methods, handler = route
        if method not in methods:
            raise HTTPProblem(405, "method_not_allowed", f"{raw} accepts {', '.join(methods)}",
                              Allow=", ".join(methods))
        return await handler(request)
    for prefix, seed_methods, seed_handler in _SEED_PREFIXES:
        if raw.startswith(prefix):
            if method not in seed_methods:
                raise HTTPProblem(405, "method_not_allowed",
                                  f"{prefix}<key> accepts {', '.join(seed_methods)}",
                                  Allow=", ".join(seed_methods))
            return await seed_handler(request, _key(raw[len(prefix) - 1:]))
    if raw == "/_jobs" or raw.startswith("/_jobs/"):
        return await admin.dispatch_jobs(request, _state(request), raw[len("/_jobs"):])
    if raw.startswith("/_workers/"):
        return await admin.dispatch_workers(request, _state(request), raw[len("/_workers/"):])
    if raw.startswith("/_"):
        raise HTTPProblem(404, "no_such_route",
                          f"paths under /_ are reserved; store such keys via /put{raw}")
    key = _key(raw)
    if method in ("GET", "HEAD"):
        return await get_value(request, key)
    if method == "PUT":
        return await put_value(request, key)
    if method == "DELETE":
        return await delete_value(request, key)
    if method == "UNLINK":
        await _state(request).store.unlink(key)
        return web.Response(status=204)
    raise HTTPProblem(405, "method_not_allowed", f"keys accept {KEY_METHODS}", Allow=KEY_METHODS)


async def put_value(request: web.Request, key: str) -> web.Response:
    """PUT /<key>: 201 if new, 204 if replaced, 412 if If-None-Match matches the live value
    (``*`` matches any)."""
    result = await _state(request).store.put(
        key, body_chunks(request, READ_CHUNK), request.content_length,
        request.headers.get("If-None-Match"))
    return web.Response(status=201 if result.created else 204,
                        headers={"ETag": etag(result.record.md5)})


async def get_value(request: web.Request, key: str, direct: bool = False) -> web.StreamResponse:
    """GET/HEAD /<key>: redirect to a live replica, or stream it with ``?direct``."""
    state = _state(request)
    cache = state.store.cache
    hit = cache.get(key)
    record, value = hit if hit is not None else (state.index.get(Space.LIVE, key), None)
    if record is None:
        return _not_found()
    headers = _value_headers(record)
    if etag_matches(request.headers.get("If-None-Match"), record.md5):
        return web.Response(status=304, headers=headers)
    if request.method == "HEAD":
        return head_response(200, headers, record.size)
    if cache.holds(record.size) and range_asked(request.headers) is None:
        if value is None:
            cache.missed()
            value = await _read_small(state, record)
            if state.index.get(Space.LIVE, key) == record:  # not replaced meanwhile
                cache.put(record, value)
        return web.Response(body=value, headers={**headers,
                                                  "Content-Type": "application/octet-stream"})
    replicas = state.membership.live_replicas(record.replicas)
    if not replicas:
        raise HTTPProblem(503, "no_live_replica", f"every replica of {key!r} is down")
    if direct or "direct" in request.query or _truthy(request.headers.get("X-Kfs-Direct")):
        return await _proxy(request, record, replicas)
    url = replica_io.blob_url(state.membership.url(random.choice(replicas)), _blob(record))
    return web.Response(status=302, headers={**headers, "Location": url})


def _truthy(header: str | None) -> bool:
    return header is not None and header.strip().lower() in ("1", "true", "yes")


def _blob(record: IndexRecord) -> str:
    return blob_id(record.key, record.version)


async def _read_small(state: MasterState, record: IndexRecord) -> bytes:
    """Read a small value whole from a live replica whose bytes match its MD5 (for the cache)."""
    failures: list[str] = []
    for index in state.membership.live_replicas(record.replicas):
        url = replica_io.blob_url(state.membership.url(index), _blob(record))
        try:
            async with state.session.get(url) as upstream:
                if upstream.status != 200:
                    failures.append(f"worker {index}: {upstream.status}")
                    continue
                value = await upstream.read()
        except (aiohttp.ClientError, OSError) as exc:
            _replica_failed(state, index, exc, failures)
            continue
        if hashlib.md5(value, usedforsecurity=False).hexdigest() == record.md5:
            return value
        failures.append(f"worker {index}: the bytes do not match the MD5")
    if not failures:
        raise HTTPProblem(503, "no_live_replica", f"every replica of {record.key!r} is down")
    raise HTTPProblem(502, "no_replica_served", "; ".join(failures))


def _replica_failed(state: MasterState, index: int, exc: BaseException,
                    failures: list[str]) -> None:
    """Record a replica's failure; one that could not be reached counts as down for now."""
    failures.append(f"worker {index}: {exc}")
    if isinstance(exc, (aiohttp.ClientConnectionError, OSError)):
        state.membership.suspect(index, str(exc))


_PASSED_HEADERS = ("Content-Length", "Content-Range", "Content-Type", "Accept-Ranges")


async def _proxy(request: web.Request, record: IndexRecord,
                 replicas: list[int]) -> web.StreamResponse:
    """Stream a value through the master, trying the next replica if one fails before sending."""
    state = _state(request)
    asked = range_asked(request.headers)
    forward = {"Range": asked} if asked is not None else {}
    failures = []
    for index in replicas:
        url = replica_io.blob_url(state.membership.url(index), _blob(record))
        try:
            async with state.session.get(url, headers=forward) as upstream:
                if upstream.status == 416:
                    return web.Response(status=416, body=await upstream.read(), headers={
                        "Content-Type": "application/json",
                        "Content-Range": upstream.headers.get("Content-Range", "")})
                if upstream.status not in (200, 206):
                    failures.append(f"worker {index}: {upstream.status}")
                    continue
                response = web.StreamResponse(status=upstream.status, headers={
                    **_value_headers(record),
                    **{h: upstream.headers[h] for h in _PASSED_HEADERS if h in upstream.headers}})
                try:  # from here on a failure (worker's or client's) can only cut the response
                    await response.prepare(request)
                    async for chunk in upstream.content.iter_chunked(READ_CHUNK):
                        await response.write(chunk)
                    await response.write_eof()
                except (aiohttp.ClientError, OSError) as exc:
                    raise ResponseAborted(f"stream from worker {index} cut: {exc}") from None
                return response
        except (aiohttp.ClientError, OSError) as exc:
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the client went away") from None
            _replica_failed(state, index, exc, failures)
    raise HTTPProblem(502, "no_replica_served", "; ".join(failures))


async def delete_value(request: web.Request, key: str) -> web.Response:
    """DELETE /<key>: 204 once gone from the index and the replicas, 404 if absent."""
    await _state(request).store.delete(key)
    return web.Response(status=204)


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise HTTPProblem(400, "bad_parameter", f"{name}={text!r}: must be {low}..{high}")
    return int(text)


async def list_keys(request: web.Request, prefix: str) -> web.Response:
    """GET /<prefix>?list (or ?unlinked): one page of keys in byte order, and the next start."""
    space = Space.UNLINKED if "unlinked" in request.query else Space.LIVE
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    start = request.query.get("start", "")
    try:
        too_long = len(start.encode("utf-8")) > MAX_KEY_BYTES
    except UnicodeEncodeError:
        raise HTTPProblem(400, "bad_parameter", "start is not valid UTF-8") from None
    if too_long:
        raise HTTPProblem(400, "bad_parameter", f"start is over {MAX_KEY_BYTES} bytes")
    keys, next_key = _state(request).index.keys(space, prefix, start, limit)
    return web.json_response({"keys": keys, "next": next_key})


async def health(request: web.Request) -> web.Response:
    """GET /health: 200 while the master serves."""
    state = _state(request)
    return web.json_response({"status": "ok", "role": "master", "id": state.master_id})


async def cluster(request: web.Request) -> web.Response:
    """GET /_cluster (and the seed's /gets): the master, the replicas setting, the workers."""
    state = _state(request)
    body: dict[str, Any] = {
        "master": {"id": state.master_id, "url": state.url, "started": state.started},
        "replicas": state.config.replicas,
        "workers": state.membership.describe(),
        "cache": {"max_bytes": state.store.cache.max_bytes, **vars(state.store.cache.stats)},
        "jobs": {"running": (running := state.jobs.running()) and running.describe()},
        "repairs": state.repairs.describe(),
    }
    if _truthy(request.query.get("keys")):
        body["keys"] = await state.key_health()
    return web.json_response(body)


async def register(request: web.Request) -> web.Response:
    """POST /_workers/register {id, url, index?}: the worker's index."""
    body = await _json(request)
    worker_id, url, wanted = body.get("id"), body.get("url"), body.get("index")
    valid_index = wanted is None or (type(wanted) is int and wanted >= 0)
    if not isinstance(worker_id, str) or not worker_id or not valid_index:
        raise HTTPProblem(400, "bad_registration", "need {id: str, url: str, index: int >= 0|null}")
    if not isinstance(url, str) or not _is_base_url(url):
        raise HTTPProblem(400, "bad_registration", f"url {url!r} is not http(s)://host:port")
    info = await _state(request).membership.register(worker_id, url, wanted)
    return web.json_response({"index": info.index, "master_id": _state(request).master_id})


def _is_base_url(url: str) -> bool:
    """Return True for a plain ``http(s)://host:port`` URL, safe to put in a Location header."""
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname) and port is not None
            and parts.path in ("", "/") and not parts.query and not parts.fragment)


async def heartbeat(request: web.Request) -> web.Response:
    """POST /_workers/heartbeat {id, stats}: 204, or 404 if the worker must register again."""
    body = await _json(request)
    stats = body.get("stats")
    if not isinstance(body.get("id"), str) or not isinstance(stats, dict):
        raise HTTPProblem(400, "bad_heartbeat", "need {id: str, stats: object}")
    if not _state(request).membership.heartbeat(body["id"], stats):
        raise HTTPProblem(404, "unknown_worker", "register first")
    return web.Response(status=204)


async def corrupt(request: web.Request) -> web.Response:
    """POST /_workers/corrupt {id, blobs: [{key, version}]}: a worker's scrub found these
    corrupt; queue the keys whose current version they are for repair.  202."""
    state = _state(request)
    body = await _json(request)
    blobs = body.get("blobs")
    if (not isinstance(body.get("id"), str) or not isinstance(blobs, list)
            or not all(isinstance(b, dict) and isinstance(b.get("key"), str)
                       and isinstance(b.get("version"), str) for b in blobs)):
        raise HTTPProblem(400, "bad_report", "need {id: str, blobs: [{key: str, version: str}]}")
    if not state.membership.known(body["id"]):
        raise HTTPProblem(404, "unknown_worker", "register first")
    keys = []
    for blob in blobs:
        found = state.index.current(blob["key"])
        if found is not None and found[1].version == blob["version"]:
            keys.append(blob["key"])
    log.warning("worker %s reports %d corrupt blobs; %d keys queued for repair", body["id"],
                len(blobs), len(keys))
    state.repairs.add(keys)
    return web.json_response({"queued": len(keys)}, status=202)


async def _json(request: web.Request) -> dict[str, Any]:
    return json_object(await request.read())



async def clear(request: web.Request) -> web.Response:
    """DELETE /clear?confirm=yes: delete every key (the seed's route); 400 without confirm."""
    if request.query.get("confirm") != "yes":
        raise HTTPProblem(400, "confirm_required", "DELETE /clear deletes every key; "
                          "add ?confirm=yes to mean it")
    deleted = await _state(request).store.clear()
    return web.json_response({"deleted": deleted})


async def seed_put(request: web.Request, key: str) -> web.Response:
    """PUT /put/<key> with form field ``value`` or an uploaded file in field ``file``."""
    try:
        return await _seed_form(request, key)
    except ValueError as exc:  # aiohttp's form parsers report malformed forms as ValueError
        raise HTTPProblem(400, "bad_form", f"the form cannot be parsed: {exc}") from None


async def _seed_form(request: web.Request, key: str) -> web.Response:
    content_type = request.content_type
    if content_type == "multipart/form-data":
        reader = await request.multipart()
        while (part := await paced(request, reader.next())) is not None:
            if isinstance(part, aiohttp.BodyPartReader) and part.name in ("value", "file"):
                return await _seed_store(request, key, _part_chunks(request, part), None)
        raise HTTPProblem(400, "missing_field", "send a form field 'value' or a file 'file'")
    if content_type == "application/x-www-form-urlencoded":
        form = await paced(request, request.post())  # a form must arrive within one timeout
        if "value" in form and isinstance(form["value"], str):
            data = form["value"].encode("utf-8")
            return await _seed_store(request, key, _one(data), len(data))
        if "file" in form:
            raise HTTPProblem(400, "file_not_uploaded",
                              "'file' must be an uploaded file: use curl -F file=@PATH")
        raise HTTPProblem(400, "missing_field", "send a form field 'value' or a file 'file'")
    return await put_value(request, key)


async def _seed_store(request: web.Request, key: str, chunks: AsyncIterator[bytes],
                      size: int | None) -> web.Response:
    result = await _state(request).store.put(key, chunks, size)
    return web.json_response({"key": key, "md5": result.record.md5, "size": result.record.size},
                             status=201 if result.created else 200,
                             headers={"ETag": etag(result.record.md5)})


async def _part_chunks(request: web.Request,
                       part: aiohttp.BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await paced(request, part.read_chunk(READ_CHUNK)):
        yield chunk


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def seed_get(request: web.Request, key: str) -> web.StreamResponse:
    """GET /get/<key>: the value's bytes, streamed by the master (curl prints them)."""
    return await get_value(request, key, direct=True)


async def seed_delete(request: web.Request, key: str) -> web.Response:
    """DELETE /delete/<key>: as DELETE /<key>."""
    return await delete_value(request, key)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: the master's metrics in the Prometheus text format."""
    registry: Metrics = request.app["metrics"]
    return await registry.handle(request)


async def openapi(request: web.Request) -> web.Response:
    """GET /_openapi.yaml: the OpenAPI description of this API (shipped in the package)."""
    return web.Response(body=OPENAPI, content_type="application/yaml")


OPENAPI = resources.files("kittenfs").joinpath("openapi.yaml").read_bytes()

_ROUTES = {
    "/health": (("GET", "HEAD"), health),
    "/_openapi.yaml": (("GET",), openapi),
    "/metrics": (("GET",), metrics),
    "/_cluster": (("GET",), cluster),
    "/gets": (("GET",), cluster),
    "/clear": (("DELETE",), clear),
    "/_workers/register": (("POST",), register),
    "/_workers/heartbeat": (("POST",), heartbeat),
    "/_workers/corrupt": (("POST",), corrupt),
}

_SEED_PREFIXES = (
    ("/put/", ("PUT", "POST"), seed_put),
    ("/get/", ("GET", "HEAD"), seed_get),
    ("/delete/", ("DELETE",), seed_delete),
)
