"""HTTP handlers of the master: parse the request, call one operation, map the result.

Routing is by hand because a key may be any path: reserved paths (``/health``, ``/_*``,
``/gets``, ``/clear`` and the seed routes ``/put/``, ``/get/``, ``/delete/``) are matched
first, and every other path is a key.  docs/api.md is the contract.
"""

import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import aiohttp
from aiohttp import web

from ..httputil import Handler, HTTPProblem, etag
from ..keys import MAX_KEY_BYTES, InvalidKey, key_from_raw_path
from ..limits import body_chunks, paced
from ..server import METRICS
from ..streaming import one_chunk
from . import admin, console, credential_api, gateway_link, read_path, uploads, worker_link
from .access import Caller, Need
from .index import Space
from .membership import Membership
from .state import STATE, MasterState

#: Chunk size for reading request bodies.
READ_CHUNK = 256 * 1024
#: Default and largest page of a listing.
DEFAULT_LIMIT, MAX_LIMIT = 1000, 10000
#: Methods a key accepts.
KEY_METHODS = ("GET", "HEAD", "PUT", "DELETE", "UNLINK")
#: Where ``dispatch`` keeps a request's authorized caller.
CALLER = "kittenfs.caller"

log = logging.getLogger("kittenfs.master")


def _state(request: web.Request) -> MasterState:
    return request.app[STATE]


def _key(raw_path: str) -> str:
    try:
        return key_from_raw_path(raw_path)
    except InvalidKey as exc:
        raise HTTPProblem(400, "bad_key", str(exc)) from None


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route every request of the master, once its caller may do what it asks."""
    raw = request.raw_path.split("?", 1)[0]
    method = request.method
    access = _state(request).access
    if method == "GET" and ("list" in request.query or "unlinked" in request.query):
        asked = _key(raw or "/")
        caller = _remember(request, await access.authorize(request, Need.READ, asked, listing=True))
        return await list_keys(request, access.listing(caller, asked))
    route = _ROUTES.get(raw)
    if route is not None:
        methods, need, handler = route
        _allow(method, methods, raw)
        _remember(request, await access.authorize(request, need))
        return await handler(request)
    for prefix, seed_methods, seed_handler in _SEED_PREFIXES:
        if raw.startswith(prefix):
            _allow(method, seed_methods, f"{prefix}<key>")
            key = _key(raw[len(prefix) - 1 :])
            _remember(request, await access.authorize(request, key_need(method), key))
            return await seed_handler(request, key)
    for prefix, need, route_handler in _ADMIN_PREFIXES:
        if raw == prefix.rstrip("/") or raw.startswith(prefix):
            return await route_handler(request, _state(request), raw[len(prefix) :], need)
    if raw.startswith("/_"):
        raise HTTPProblem(
            404, "no_such_route", f"paths under /_ are reserved; store such keys via /put{raw}"
        )
    key = _key(raw)
    _allow(method, KEY_METHODS, "keys")
    caller = _remember(request, await access.authorize(request, key_need(method), key))
    if method == "GET" and "replicas" in request.query:
        if caller.link is not None:  # a link's signature covers the value, not the query
            raise HTTPProblem(403, "forbidden", "a link reads the value only, not its replicas")
        return await key_replicas(request, key)
    if method in ("GET", "HEAD"):
        direct = "direct" in request.query or _truthy(request.headers.get("X-Kfs-Direct"))
        return await read_path.read(request, _state(request), key, caller, direct)
    if method == "PUT":
        return await put_value(request, key)
    if method == "DELETE":
        return await delete_value(request, key)
    await _state(request).store.unlink(key)
    return web.Response(status=204)


def is_key_path(raw: str) -> bool:
    """Return True if ``raw`` (a path without its query) names a key, not a reserved route:
    what ``dispatch`` would route to the key handlers (fast_path.py asks)."""
    return (
        raw not in _ROUTES
        and not raw.startswith("/_")  # the admin prefixes among them
        and not any(raw.startswith(prefix) for prefix, _, _ in _SEED_PREFIXES)
    )


def _allow(method: str, methods: tuple[str, ...], what: str) -> None:
    """Raise 405 unless ``method`` is one of ``methods``."""
    if method not in methods:
        raise HTTPProblem(
            405,
            "method_not_allowed",
            f"{what} accepts {', '.join(methods)}",
            Allow=", ".join(methods),
        )


def key_need(method: str) -> Need:
    return Need.READ if method in ("GET", "HEAD") else Need.WRITE


def _remember(request: web.Request, caller: Caller) -> Caller:
    request[CALLER] = caller
    return caller


def caller_of(request: web.Request) -> Caller:
    """Return the caller ``dispatch`` authorized for ``request``."""
    caller: Caller = request[CALLER]
    return caller


async def put_value(request: web.Request, key: str) -> web.Response:
    """PUT /<key>: 201 if new, 204 if replaced, 412 if If-None-Match matches the live value
    (``*`` matches any)."""
    result = await _state(request).store.put(
        key,
        body_chunks(request, READ_CHUNK),
        request.content_length,
        request.headers.get("If-None-Match"),
    )
    return web.Response(
        status=201 if result.created else 204, headers={"ETag": etag(result.record.md5)}
    )


def _truthy(header: str | None) -> bool:
    return header is not None and header.strip().lower() in ("1", "true", "yes")


async def delete_value(request: web.Request, key: str) -> web.Response:
    """DELETE /<key>: 204 once gone from the index and the replicas, 404 if absent."""
    await _state(request).store.delete(key)
    return web.Response(status=204)


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not low <= int(text) <= high:
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
    keys, next_key = await _state(request).index.keys(space, prefix, start, limit)
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
        # Masters sharing the index (PostgreSQL), and the one holding the duties (duties.py).
        "masters": [{"id": id_, "url": url} for id_, url in state.duties.masters],
        "duties": state.duties.holder,
        "replicas": state.config.replicas,
        "workers": state.membership.describe(),
        "cache": {"max_bytes": state.store.cache.max_bytes, **vars(state.store.cache.stats)},
        "jobs": {"running": (running := state.jobs.running()) and running.describe()},
        "repairs": state.repairs.describe(),
        "history": state.membership.history(),
    }
    if _truthy(request.query.get("keys")):
        body["keys"] = await state.key_health()
    return web.json_response(body)


async def key_replicas(request: web.Request, key: str) -> web.Response:
    """GET /<key>?replicas: the key's record and the state of each replica (the console's
    key details); 404 if the key has no live or unlinked value."""
    state = _state(request)
    found = await state.index.current(key)
    if found is None:
        raise HTTPProblem(404, "not_found", f"no value at {key!r}")
    space, record = found
    damaged = state.repairs.damage.of(record)
    workers = state.membership
    return web.json_response(
        {
            "key": record.key,
            "state": "live" if space is Space.LIVE else "unlinked",
            "version": record.version,
            "size": record.size,
            "md5": record.md5,
            "created_ms": record.created_ms,
            "modified_ms": record.modified_ms,
            "replicas": [
                {
                    "worker": index,
                    "url": workers.url(index) if index in workers.workers else None,
                    "state": _replica_state(workers, index, index in damaged),
                }
                for index in record.replicas
            ],
        }
    )


def _replica_state(workers: Membership, index: int, damaged: bool) -> str:
    if index not in workers.workers:
        return "removed"
    if damaged:
        return "damaged"
    return "up" if workers.is_up(index) else "down"


async def clear(request: web.Request) -> web.Response:
    """DELETE /clear?confirm=yes: delete every key (the seed's route); 400 without confirm."""
    if request.query.get("confirm") != "yes":
        raise HTTPProblem(
            400, "confirm_required", "DELETE /clear deletes every key; add ?confirm=yes to mean it"
        )
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
            return await _seed_store(request, key, one_chunk(data), len(data))
        if "file" in form:
            raise HTTPProblem(
                400, "file_not_uploaded", "'file' must be an uploaded file: use curl -F file=@PATH"
            )
        raise HTTPProblem(400, "missing_field", "send a form field 'value' or a file 'file'")
    return await put_value(request, key)


async def _seed_store(
    request: web.Request, key: str, chunks: AsyncIterator[bytes], size: int | None
) -> web.Response:
    result = await _state(request).store.put(key, chunks, size)
    return web.json_response(
        {"key": key, "md5": result.record.md5, "size": result.record.size},
        status=201 if result.created else 200,
        headers={"ETag": etag(result.record.md5)},
    )


async def _part_chunks(request: web.Request, part: aiohttp.BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await paced(request, part.read_chunk(READ_CHUNK)):
        yield chunk


async def seed_get(request: web.Request, key: str) -> web.StreamResponse:
    """GET /get/<key>: the value's bytes, streamed by the master (curl prints them)."""
    return await read_path.read(request, _state(request), key, caller_of(request), direct=True)


async def seed_delete(request: web.Request, key: str) -> web.Response:
    """DELETE /delete/<key>: as DELETE /<key>."""
    return await delete_value(request, key)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: the master's metrics in the Prometheus text format."""
    return await request.app[METRICS].handle(request)


async def openapi(request: web.Request) -> web.Response:
    """GET /_openapi.yaml: the OpenAPI description of this API (shipped in the package)."""
    return web.Response(body=OPENAPI, content_type="application/yaml")


OPENAPI = resources.files("kittenfs").joinpath("openapi.yaml").read_bytes()

_ROUTES: dict[str, tuple[tuple[str, ...], Need, Handler]] = {
    "/health": (("GET", "HEAD"), Need.OPEN, health),
    "/_openapi.yaml": (("GET",), Need.OPEN, openapi),
    "/metrics": (("GET",), Need.MEMBER_OR_READER, metrics),
    "/_cluster": (("GET",), Need.MEMBER_OR_READER, cluster),
    "/gets": (("GET",), Need.MEMBER_OR_READER, cluster),
    "/clear": (("DELETE",), Need.ADMIN, clear),
    "/_sign": (("POST",), Need.OPEN, credential_api.sign),  # checks the key it signs for
    "/_workers/register": (("POST",), Need.MEMBER, worker_link.register),
    "/_workers/heartbeat": (("POST",), Need.MEMBER, worker_link.heartbeat),
    "/_workers/corrupt": (("POST",), Need.MEMBER, worker_link.corrupt),
    "/_gateway/hello": (("GET",), Need.MEMBER, gateway_link.hello),
    "/_gateway/record": (("GET",), Need.MEMBER, gateway_link.record),
    "/_gateway/records": (("GET",), Need.MEMBER, gateway_link.records),
    "/_gateway/signing-key": (("POST",), Need.MEMBER, gateway_link.signing_key),
    **console.ROUTES,
}

#: Routes under a prefix, each routed further by its own module (which checks the need).
_ADMIN_PREFIXES = (
    ("/_jobs/", Need.ADMIN, admin.dispatch_jobs),
    ("/_workers/", Need.ADMIN, admin.dispatch_workers),
    ("/_keys/", Need.ADMIN, credential_api.dispatch),
    ("/_uploads/", Need.WRITE, uploads.dispatch),
)

_SEED_PREFIXES = (
    ("/put/", ("PUT", "POST"), seed_put),
    ("/get/", ("GET", "HEAD"), seed_get),
    ("/delete/", ("DELETE",), seed_delete),
)
