"""Uploads in parts: a value sent as numbered parts, each a request of its own, and stored as
one ordinary value when the upload completes (the web console sends large files so; any
client may).  A part that fails is sent again alone, and an upload cut off is resumed from
the parts the master has (``GET``), so a large file survives a dropped connection.

An upload is kept in ordinary keys, so its bytes are replicated and fsynced like any value:
``/_uploads/<id>`` (empty; its record's ``meta`` names the key it makes and who started it)
and ``/_uploads/<id>/<part, 5 digits>``.  Completing streams the parts in order into one
PUT of the key (the bytes are copied once more, inside the cluster: what it costs to end
with an ordinary value that every read path, job and tool knows), marks the upload
completed (so a complete sent again, its answer lost, gets the same answer), and deletes
the parts, as best it can: what is left the sweep deletes.
Uploads left untouched for ``--upload-abandoned-after`` seconds (a day by default), and
parts whose upload is gone, are deleted by ``clean_forever``.

Each step needs write access to the key the upload makes, and the caller who started it
(its credential; anyone when auth is off): docs/api.md, "Uploads in parts".
"""

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..errors import NoGoodReplica, NotFound, StoreError
from ..httputil import HTTPProblem, etag, json_key, json_object
from ..limits import body_chunks, paced
from ..records import IndexRecord
from ..streaming import one_chunk
from .access import Caller, Need
from .index import Space
from .state import MasterState

log = logging.getLogger("kittenfs.master")

UPLOADS = "/_uploads/"
#: The ``meta`` entries of an upload's record: the key it makes, who started it, and once
#: completed, what it stored (JSON: size, md5, created).
TARGET, OWNER, DONE = "x-kfs-upload-key", "x-kfs-upload-by", "x-kfs-upload-done"
#: Bytes of a JSON body a step of an upload reads at most.
JSON_MAX = 64 * 1024
#: Parts an upload may have, numbered from 1.
MAX_PARTS = 10_000
#: Seconds a part whose upload is gone is kept (its upload may be completing right now).
ORPHAN_AFTER = 60.0
READ_CHUNK = 256 * 1024
UPLOAD_ID = re.compile(r"[0-9a-f]{32}")

#: Uploads being completed or aborted here: one ending at a time per upload.
_ENDING: set[str] = set()


def upload_key(upload: str) -> str:
    return f"{UPLOADS}{upload}"


def part_key(upload: str, number: int) -> str:
    return f"{UPLOADS}{upload}/{number:05d}"


async def dispatch(
    request: web.Request, state: MasterState, rest: str, need: Need
) -> web.StreamResponse:
    """Route ``/_uploads`` and ``/_uploads/<id>[/<part>]`` (each step checks its caller)."""
    method, path = request.method, rest.split("/") if rest else []
    if not path:
        _allow(method, ("POST",))
        return await start(request, state)
    if not UPLOAD_ID.fullmatch(path[0]):
        raise HTTPProblem(404, "no_such_upload", f"{path[0]!r} is not an upload id")
    if len(path) == 1:
        _allow(method, ("GET", "POST", "DELETE"))
        action = {"GET": describe, "POST": complete, "DELETE": abort}[method]
        return await action(request, state, path[0])
    if len(path) == 2:
        _allow(method, ("PUT",))
        return await put_part(request, state, path[0], _asked_part(path[1]))
    raise HTTPProblem(404, "no_such_route", "routes: /_uploads, /_uploads/<id>[/<part>]")


def _allow(method: str, methods: tuple[str, ...]) -> None:
    if method not in methods:
        raise HTTPProblem(
            405, "method_not_allowed", f"accepts {', '.join(methods)}", Allow=", ".join(methods)
        )


def _part_number(text: str) -> int | None:
    """The part ``text`` names: 1 to MAX_PARTS in ASCII digits, else None."""
    return int(text) if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_PARTS else None


def _asked_part(text: str) -> int:
    number = _part_number(text)
    if number is None:
        raise HTTPProblem(400, "bad_part", f"a part is numbered 1 to {MAX_PARTS}, not {text!r}")
    return number


async def _json(request: web.Request) -> dict[str, Any]:
    """The step's JSON body (read once its caller is known: a stranger's body is not read),
    at most JSON_MAX bytes and within the body timeout."""
    if (request.content_length or 0) > JSON_MAX:
        raise HTTPProblem(413, "body_too_large", f"a JSON body of at most {JSON_MAX} bytes")
    body = await paced(request, request.read())  # whole (a read may give part of it)
    if len(body) > JSON_MAX:  # sent without a Content-Length: bounded by client_max_size
        raise HTTPProblem(413, "body_too_large", f"a JSON body of at most {JSON_MAX} bytes")
    return json_object(body)


async def _writer(request: web.Request, state: MasterState, key: str) -> Caller:
    """The caller, if it may write ``key`` (a signed link may not start or join an upload)."""
    caller = await state.access.authorize(request, Need.WRITE, key)
    if caller.link is not None:
        raise HTTPProblem(403, "forbidden", "a link cannot upload in parts")
    return caller


async def _owned(request: web.Request, state: MasterState, upload: str) -> tuple[str, IndexRecord]:
    """Return the key ``upload`` makes and its record, if the caller started it."""
    record = await state.index.get(Space.LIVE, upload_key(upload))
    if record is None:
        raise HTTPProblem(404, "no_such_upload", f"no upload {upload} (completed, or gone)")
    key = record.meta_value(TARGET) or ""
    caller = await _writer(request, state, key)
    if caller.credential != record.meta_value(OWNER):
        raise HTTPProblem(403, "not_your_upload", f"upload {upload} was started by another")
    return key, record


async def start(request: web.Request, state: MasterState) -> web.Response:
    """POST /_uploads {"key"}: a new upload of ``key``; 201 {"upload", "key"}."""
    await state.access.identify(request)  # who asks, before the body is read
    key = json_key(await _json(request))
    caller = await _writer(request, state, key)
    upload = secrets.token_hex(16)
    await state.store.put(
        upload_key(upload), one_chunk(b""), 0, meta=((TARGET, key), (OWNER, caller.credential))
    )
    return web.json_response({"upload": upload, "key": key}, status=201)


async def put_part(
    request: web.Request, state: MasterState, upload: str, number: int
) -> web.Response:
    """PUT /_uploads/<id>/<n>: store part ``n`` (again, if it was sent before)."""
    _, record = await _owned(request, state, upload)
    if upload in _ENDING or record.meta_value(DONE):
        raise HTTPProblem(409, "upload_ending", f"upload {upload} is completing or completed")
    result = await state.store.put(
        part_key(upload, number), body_chunks(request, READ_CHUNK), request.content_length
    )
    record = result.record
    return web.json_response(
        {"part": number, "size": record.size, "md5": record.md5},
        status=201,
        headers={"ETag": etag(record.md5)},
    )


async def _parts(state: MasterState, upload: str) -> list[tuple[int, IndexRecord]]:
    """The upload's parts stored, by number (a key under it that names no part is not one)."""
    parts = []
    async for record in state.index.records(Space.LIVE, f"{upload_key(upload)}/"):
        number = _part_number(record.key.rsplit("/", 1)[1])
        if number is not None:
            parts.append((number, record))
    return parts


async def describe(request: web.Request, state: MasterState, upload: str) -> web.Response:
    """GET /_uploads/<id>: the key and the parts stored so far (to resume an upload)."""
    key, record = await _owned(request, state, upload)
    parts = [
        {"part": number, "size": r.size, "md5": r.md5} for number, r in await _parts(state, upload)
    ]
    done = record.meta_value(DONE)
    return web.json_response(
        {
            "upload": upload,
            "key": key,
            "parts": parts,
            "completed": json.loads(done) if done else None,
        }
    )


async def complete(request: web.Request, state: MasterState, upload: str) -> web.Response:
    """POST /_uploads/<id> {"parts": n}: store parts 1 .. n, in order, as the key's value
    (201 new, 200 replaced), mark the upload completed, then delete its parts.  400
    missing_part unless exactly parts 1 .. n are stored.  Sent again once completed, it
    answers as the first time did (its answer may have been lost on the way)."""
    key, record = await _owned(request, state, upload)
    count = (await _json(request)).get("parts")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_PARTS:
        raise HTTPProblem(400, "bad_option", f"parts must be the number of parts, 1 to {MAX_PARTS}")
    if (done := record.meta_value(DONE)) is not None:
        return _completed(key, json.loads(done))
    if upload in _ENDING:
        raise HTTPProblem(409, "upload_ending", f"upload {upload} is completing or aborting")
    _ENDING.add(upload)
    try:
        parts = await _parts(state, upload)
        numbers = [number for number, _ in parts]
        if numbers != list(range(1, count + 1)):
            missing = sorted(set(range(1, count + 1)) - set(numbers))
            raise HTTPProblem(
                400,
                "missing_part",
                f"parts 1 to {count} asked, stored: {numbers[:20]}"
                + (f"; missing {missing[:20]}" if missing else "; abort, or send them all"),
            )
        records = [r for _, r in parts]
        result = await state.store.put(key, _joined(state, records), sum(r.size for r in records))
        stored = {"size": result.record.size, "md5": result.record.md5, "created": result.created}
        await _finish(state, upload, record, stored, records)
    finally:
        _ENDING.discard(upload)
    return _completed(key, stored)


def _completed(key: str, stored: dict[str, Any]) -> web.Response:
    return web.json_response(
        {"key": key, "size": stored["size"], "md5": stored["md5"]},
        status=201 if stored["created"] else 200,
        headers={"ETag": etag(stored["md5"])},
    )


async def _finish(
    state: MasterState,
    upload: str,
    record: IndexRecord,
    stored: dict[str, Any],
    parts: list[IndexRecord],
) -> None:
    """After the value is stored: mark the upload completed, and delete its parts.  Best
    effort: the value is stored whatever fails here, and the sweep deletes what is left."""
    meta = (*record.meta, (DONE, json.dumps(stored)))
    try:
        await state.store.put(upload_key(upload), one_chunk(b""), 0, meta=meta)
        for part in parts:
            with contextlib.suppress(NotFound):
                await state.store.delete(part.key)
    except StoreError as exc:
        log.warning("upload %s completed; its parts are left to the sweep: %s", upload, exc)


async def _joined(state: MasterState, parts: list[IndexRecord]) -> AsyncIterator[bytes]:
    """The parts' bytes in order, each read as it was stored (its MD5 then)."""
    for record in parts:
        found = await state.reader.find(record.key)
        if found is None or found.record.md5 != record.md5:
            raise NoGoodReplica(f"part {record.key!r} changed or is gone", "no_part")
        if record.size:
            async for chunk in state.reader.span(found, 0, record.size - 1):
                yield chunk


async def abort(request: web.Request, state: MasterState, upload: str) -> web.Response:
    """DELETE /_uploads/<id>: delete the upload and its parts; 204."""
    await _owned(request, state, upload)
    if upload in _ENDING:
        raise HTTPProblem(409, "upload_ending", f"upload {upload} is completing or aborting")
    _ENDING.add(upload)
    try:
        await _delete_upload(state, upload, [r for _, r in await _parts(state, upload)])
    finally:
        _ENDING.discard(upload)
    return web.Response(status=204)


async def _delete_upload(state: MasterState, upload: str, parts: list[IndexRecord]) -> None:
    """Delete the upload's record first (no part is added after), then its parts."""
    for key in (upload_key(upload), *(r.key for r in parts)):
        with contextlib.suppress(NotFound):
            await state.store.delete(key)


async def clean_once(state: MasterState, abandoned_after: float) -> int:
    """Delete uploads untouched for ``abandoned_after`` seconds (since their start, their
    last part, or their completion) with their parts, and parts whose upload is gone; return
    how many uploads were deleted.  One upload's records in memory at a time: the listing
    is in key order, an upload's record just before its parts."""
    now_ms = time.time() * 1000
    deleted = 0
    group: list[IndexRecord] = []

    async def settle() -> None:
        nonlocal deleted
        if group:
            deleted += await _settle(state, group, now_ms, abandoned_after)
        group.clear()

    async for record in state.index.records(Space.LIVE, UPLOADS):
        upload = record.key[len(UPLOADS) :].partition("/")[0]
        if group and group[0].key[len(UPLOADS) :].partition("/")[0] != upload:
            await settle()
        group.append(record)
    await settle()
    return deleted


async def _settle(
    state: MasterState, group: list[IndexRecord], now_ms: float, abandoned_after: float
) -> int:
    """Delete one upload's records if it is abandoned, or its parts if it is gone; return 1
    if an upload was deleted."""
    upload = group[0].key[len(UPLOADS) :].partition("/")[0]
    if upload in _ENDING:
        return 0
    head = group[0] if group[0].key == upload_key(upload) else None
    parts = group[1:] if head else group
    touched = max(r.modified_ms for r in group)
    if head is None:  # orphans: kept a little, their upload may be completing elsewhere
        grace = min(ORPHAN_AFTER, abandoned_after) * 1000
        gone = [r for r in parts if now_ms - r.modified_ms > grace]
    elif now_ms - touched > abandoned_after * 1000:
        log.info("deleting the upload %s of %r: left untouched", upload, head.meta_value(TARGET))
        gone = group
    else:
        return 0
    _ENDING.add(upload)
    try:
        for record in gone:
            with contextlib.suppress(NotFound):
                await state.store.delete(record.key)
    finally:
        _ENDING.discard(upload)
    return 1 if head is not None else 0


async def clean_forever(state: MasterState) -> None:
    """Run ``clean_once`` every tenth of ``--upload-abandoned-after`` (at least every 10
    minutes) until cancelled."""
    abandoned_after = state.config.upload_abandoned_after
    while True:
        await asyncio.sleep(min(600.0, max(0.5, abandoned_after / 10)))
        if not state.duties.held:  # one sweeper for the masters sharing an index
            continue
        try:
            await clean_once(state, abandoned_after)
        except Exception:
            log.exception("cleaning abandoned uploads failed; trying again later")
