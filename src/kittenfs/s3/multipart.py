"""Multipart uploads: parts are stored as keys like any value; completing writes a manifest.

Keys (docs/s3.md), all ordinary kittenFS keys, so repair, rebalance, scrub and gc cover them:

- ``/_s3/uploads/<bucket>/<upload id>``: an upload in progress, an empty value whose record's
  ``meta`` holds the object's name (``x-kfs-object``) and the metadata it will get;
- ``/_s3/parts/<bucket>/<upload id>/<part number, 5 digits>``: a part's bytes (its ``meta``
  names the object too);
- the object's own key, once completed: a manifest naming the parts (reading.py); its
  ETag is S3's ``<MD5 of the parts' MD5s>-<count>``.

Completing copies no byte: it checks the parts, writes the manifest, then ends the upload.
An upload older than ``--s3-abandoned-after`` is aborted, and parts that no upload in
progress and no live manifest names (the object was deleted or overwritten, or an abort
was cut short) are deleted, by ``clean_forever``.
"""

import asyncio
import contextlib
import hashlib
import itertools
import logging
import secrets
import time
from urllib.parse import quote

from aiohttp import web

from ..credentials import Role
from ..errors import NotFound
from ..locks import KeyLocks
from ..master.index import Space
from ..records import IndexRecord
from ..streaming import one_chunk
from . import xml
from .body import CHECKSUM_HEADER, request_body
from .call import Backing, Call
from .errors import S3Error
from .objects import (
    delete_key,
    meta_from,
    parse_copy_source,
    put_value,
    refuse_unsupported,
    source_chunks,
    write_conditions,
)
from .reading import MANIFEST, ObjectInfo, Part, describe, manifest_bytes

log = logging.getLogger("kittenfs.s3")

UPLOADS = "/_s3/uploads/"
PARTS = "/_s3/parts/"
#: The ``meta`` entry of an upload and its parts: the object's key.
OBJECT = "x-kfs-object"
#: The smallest part but the last, as S3 requires.
MIN_PART = 5 * 1024 * 1024
MAX_PARTS_LISTED = 1000

#: The uploads being completed or aborted, by upload key: one ending at a time per upload.
#: These are not the store's key locks, which the writes and deletes inside take.
ENDING = KeyLocks()


def upload_key(bucket: str, upload: str) -> str:
    return f"{UPLOADS}{bucket}/{upload}"


def part_key(bucket: str, upload: str, number: int) -> str:
    return f"{PARTS}{bucket}/{upload}/{number:05d}"


async def _upload(call: Call) -> IndexRecord:
    """Return the record of the request's upload; NoSuchUpload if it is not in progress."""
    upload = call.request.query.get("uploadId", "")
    record = (
        await call.state.index.get(Space.LIVE, upload_key(call.bucket, upload)) if upload else None
    )
    if record is None or record.meta_value(OBJECT) != call.native_key:
        raise S3Error(
            "NoSuchUpload",
            "the specified upload does not exist: it was completed or aborted, or its id is wrong",
            UploadId=upload,
        )
    return record


async def create(call: Call) -> web.Response:
    """POST /<bucket>/<key>?uploads: start an upload; its id is in the answer."""
    call.require(Role.WRITE)
    await call.existing_bucket()
    headers = call.request.headers
    refuse_unsupported(headers)
    upload = secrets.token_urlsafe(24)
    meta = [(OBJECT, call.native_key), *meta_from(headers)]
    algorithm = headers.get("x-amz-checksum-algorithm")
    if algorithm:
        meta.append(("x-kfs-checksum-algorithm", algorithm.lower()))
    await put_value(call, upload_key(call.bucket, upload), one_chunk(b""), 0, tuple(meta))
    body = xml.document(
        "InitiateMultipartUploadResult",
        xml.elements(Bucket=call.bucket, Key=call.key, UploadId=upload),
    )
    return web.Response(body=body, content_type="application/xml")


async def upload_part(call: Call) -> web.Response:
    """PUT /<bucket>/<key>?partNumber=N&uploadId=ID: store one part (or copy one, with
    x-amz-copy-source and an optional x-amz-copy-source-range)."""
    call.require(Role.WRITE)
    await call.existing_bucket()
    number = call.part_number()
    upload = await _upload(call)
    key = part_key(call.bucket, upload.key.rsplit("/", 1)[1], number)
    meta = ((OBJECT, call.native_key),)
    headers = call.request.headers
    if "x-amz-copy-source" in headers:
        bucket, name = parse_copy_source(headers["x-amz-copy-source"])
        chunks, size, _ = await source_chunks(
            call, bucket, name, headers.get("x-amz-copy-source-range")
        )
        record = await put_value(call, key, chunks, size, meta)
        body = xml.document(
            "CopyPartResult",
            xml.elements(LastModified=xml.timestamp(record.modified_ms), ETag=f'"{record.md5}"'),
        )
        return web.Response(body=body, content_type="application/xml")
    body_in = request_body(call.request, call.verified)
    record = await put_value(call, key, body_in.chunks, body_in.size, meta, body_in.check)
    response = {"ETag": f'"{record.md5}"'}
    response.update((k, v) for k, v in record.meta if k.startswith(CHECKSUM_HEADER))
    return web.Response(headers=response)


async def _parts(state: Backing, bucket: str, upload: str, after: int = 0) -> list[IndexRecord]:
    prefix = f"{PARTS}{bucket}/{upload}/"
    start = part_key(bucket, upload, after + 1) if after else ""
    return [record async for record in state.index.records(Space.LIVE, prefix, start)]


def _number(record: IndexRecord) -> int:
    return int(record.key.rsplit("/", 1)[1])


async def complete(call: Call) -> web.Response:
    """POST /<bucket>/<key>?uploadId=ID: make the object of the listed parts."""
    call.require(Role.WRITE)
    await call.existing_bucket()
    root = xml.parse(await call.request.read())
    asked: list[tuple[int, str]] = []
    for node in xml.children(root, "Part"):
        number_text, etag_text = xml.text(node, "PartNumber"), xml.text(node, "ETag")
        if number_text is None or not number_text.strip().isdigit() or etag_text is None:
            raise S3Error("MalformedXML", "every Part needs a PartNumber and an ETag")
        asked.append((int(number_text), etag_text.strip().strip('"')))
    if not asked:
        raise S3Error("MalformedXML", "CompleteMultipartUpload names no part")
    if any(b[0] < a[0] for a, b in itertools.pairwise(asked)):
        raise S3Error("InvalidPartOrder", "the list of parts was not in ascending order")
    asked = list(dict(asked).items())  # a part named twice: the last ETag given counts
    async with ENDING.hold(upload_key(call.bucket, call.request.query.get("uploadId", ""))):
        done = await _completed(call)
        if done is not None:  # a crash may have left the upload's record: end it now
            await delete_key(call, upload_key(call.bucket, call.request.query["uploadId"]))
            return _completed_answer(call, done.etag)
        upload = await _upload(call)
        upload_id = upload.key.rsplit("/", 1)[1]
        stored = {_number(r): r for r in await _parts(call.state, call.bucket, upload_id)}
        parts: list[Part] = []
        for i, (number, etag) in enumerate(asked):
            record = stored.get(number)
            if record is None or record.md5 != etag:
                raise S3Error(
                    "InvalidPart",
                    "one or more of the specified parts could not be found, "
                    "or its ETag did not match",
                    PartNumber=str(number),
                )
            if i < len(asked) - 1 and record.size < MIN_PART:
                raise S3Error(
                    "EntityTooSmall",
                    "your proposed upload is smaller than the minimum allowed object size",
                )
            parts.append(Part(record.key, record.size, record.md5))
        digest = hashlib.md5(b"".join(bytes.fromhex(p.md5) for p in parts), usedforsecurity=False)
        etag = f"{digest.hexdigest()}-{len(parts)}"
        size = sum(p.size for p in parts)
        kept = tuple((k, v) for k, v in upload.meta if k != OBJECT and not k.startswith("x-kfs-"))
        manifest = manifest_bytes(parts, upload_id)
        await put_value(
            call,
            call.native_key,
            one_chunk(manifest),
            len(manifest),
            ((MANIFEST, f"{size} {etag}"), ("x-kfs-upload", upload_id), *kept),
            precondition=write_conditions(call.request.headers),
        )
        await delete_key(call, upload.key)
    return _completed_answer(call, etag)


async def _completed(call: Call) -> ObjectInfo | None:
    """Return the object if the request's upload already completed it (a retried
    Complete is answered as the first was), else None."""
    record = await call.state.index.get(Space.LIVE, call.native_key)
    upload = call.request.query.get("uploadId", "")
    if record is None or not upload or not _uses(record, upload):
        return None
    return describe(record)


def _completed_answer(call: Call, etag: str) -> web.Response:
    body = xml.document(
        "CompleteMultipartUploadResult",
        xml.elements(
            Location=f"/{call.bucket}/{quote(call.key)}",
            Bucket=call.bucket,
            Key=call.key,
            ETag=f'"{etag}"',
        ),
    )
    return web.Response(body=body, content_type="application/xml")


async def abort(call: Call) -> web.Response:
    """DELETE /<bucket>/<key>?uploadId=ID: end the upload and delete its parts."""
    call.require(Role.WRITE)
    await call.existing_bucket()
    async with ENDING.hold(upload_key(call.bucket, call.request.query.get("uploadId", ""))):
        upload = await _upload(call)
        await _remove_upload(call.state, call.bucket, upload.key.rsplit("/", 1)[1])
    return web.Response(status=204)


async def _end_upload(state: Backing, bucket: str, upload: str) -> None:
    """Abort an upload unless a Complete or an abort ended it first (it holds ENDING)."""
    async with ENDING.hold(upload_key(bucket, upload)):
        if await state.index.get(Space.LIVE, upload_key(bucket, upload)) is not None:
            await _remove_upload(state, bucket, upload)


async def _remove_upload(state: Backing, bucket: str, upload: str) -> None:
    """Delete an upload's record, then its parts (parts left by a crash are cleaned later),
    unless its object's manifest names them: a crash between a Complete's manifest and
    the end of its upload leaves the record of an upload that is complete."""
    ending = await state.index.get(Space.LIVE, upload_key(bucket, upload))
    with contextlib.suppress(NotFound):
        await state.store.delete(upload_key(bucket, upload))
    name = ending.meta_value(OBJECT) if ending is not None else None
    owner = await state.index.get(Space.LIVE, name) if name else None
    if owner is not None and _uses(owner, upload):
        return
    for record in await _parts(state, bucket, upload):
        with contextlib.suppress(NotFound):
            await state.store.delete(record.key)


async def list_parts(call: Call) -> web.Response:
    """GET /<bucket>/<key>?uploadId=ID: the parts stored so far, by number."""
    call.require(Role.READ)
    await call.existing_bucket()
    upload = await _upload(call)
    upload_id = upload.key.rsplit("/", 1)[1]
    query = call.request.query
    marker_text = query.get("part-number-marker", "0")
    limit_text = query.get("max-parts", str(MAX_PARTS_LISTED))
    if not marker_text.isdigit() or not limit_text.isdigit():
        raise S3Error("InvalidArgument", "part-number-marker and max-parts must be integers")
    marker, limit = int(marker_text), min(int(limit_text), MAX_PARTS_LISTED)
    records = await _parts(call.state, call.bucket, upload_id, marker)
    page, truncated = records[:limit], len(records) > limit
    items = (
        "<Part>"
        + xml.elements(
            PartNumber=_number(r),
            LastModified=xml.timestamp(r.modified_ms),
            ETag=f'"{r.md5}"',
            Size=r.size,
        )
        + "</Part>"
        for r in page
    )
    owner = "<Owner>" + xml.elements(ID=call.owner, DisplayName=call.owner) + "</Owner>"
    body = xml.document(
        "ListPartsResult",
        xml.elements(
            Bucket=call.bucket,
            Key=call.key,
            UploadId=upload_id,
            PartNumberMarker=marker,
            NextPartNumberMarker=_number(page[-1]) if truncated and page else None,
            MaxParts=limit,
            IsTruncated=truncated,
            StorageClass="STANDARD",
        ),
        "<Initiator>" + xml.elements(ID=call.owner, DisplayName=call.owner) + "</Initiator>",
        owner,
        items,
    )
    return web.Response(body=body, content_type="application/xml")


async def list_uploads(call: Call) -> web.Response:
    """GET /<bucket>?uploads: the uploads in progress, by object name."""
    call.require_listing(f"/{call.bucket}/")
    await call.existing_bucket()
    query = call.request.query
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    key_marker, id_marker = query.get("key-marker", ""), query.get("upload-id-marker", "")
    limit_text = query.get("max-uploads", "1000")
    if not limit_text.isdigit():
        raise S3Error("InvalidArgument", "max-uploads must be an integer")
    limit = min(int(limit_text), 1000)
    base = f"/{call.bucket}/"
    found = []
    async for record in call.state.index.records(Space.LIVE, f"{UPLOADS}{call.bucket}/"):
        name = (record.meta_value(OBJECT) or base)[len(base) :]
        upload = record.key.rsplit("/", 1)[1]
        if name.startswith(prefix) and (name, upload) > (
            key_marker,
            id_marker if key_marker else "",
        ):
            found.append((name, record.created_ms, upload))
    found.sort()
    uploads: list[tuple[str, int, str]] = []
    prefixes: list[str] = []
    truncated = False
    for name, created, upload in found:
        common = None
        if delimiter and (at := name.find(delimiter, len(prefix))) >= 0:
            common = name[: at + len(delimiter)]
            if common in prefixes:
                continue
        if len(uploads) + len(prefixes) == limit:
            truncated = True
            break
        if common is not None:
            prefixes.append(common)
        else:
            uploads.append((name, created, upload))
    owner = xml.elements(ID=call.owner, DisplayName=call.owner)
    items = (
        "<Upload>"
        + xml.elements(Key=name, UploadId=upload)
        + f"<Initiator>{owner}</Initiator><Owner>{owner}</Owner>"
        + xml.elements(StorageClass="STANDARD", Initiated=xml.timestamp(created))
        + "</Upload>"
        for name, created, upload in uploads
    )
    last = uploads[-1] if uploads else None
    body = xml.document(
        "ListMultipartUploadsResult",
        xml.elements(
            Bucket=call.bucket,
            KeyMarker=key_marker,
            UploadIdMarker=id_marker,
            NextKeyMarker=last[0] if truncated and last else None,
            NextUploadIdMarker=last[2] if truncated and last else None,
            Prefix=prefix,
            Delimiter=delimiter or None,
            MaxUploads=limit,
            IsTruncated=truncated,
        ),
        items,
        "".join(
            "<CommonPrefixes>" + xml.element("Prefix", p) + "</CommonPrefixes>" for p in prefixes
        ),
    )
    return web.Response(body=body, content_type="application/xml")


async def abort_all(state: Backing, bucket: str) -> None:
    """Abort every upload in progress in ``bucket`` (it is being deleted)."""
    async for record in state.index.records(Space.LIVE, f"{UPLOADS}{bucket}/"):
        await _end_upload(state, bucket, record.key.rsplit("/", 1)[1])


async def clean_once(state: Backing, abandoned_after: float) -> int:
    """Abort uploads older than ``abandoned_after`` seconds and delete parts that neither an
    upload in progress nor a live manifest names; return how many uploads were ended."""
    now_ms = time.time() * 1000
    ended = 0
    async for record in state.index.records(Space.LIVE, UPLOADS):
        if now_ms - record.created_ms > abandoned_after * 1000:
            bucket, upload = record.key[len(UPLOADS) :].rsplit("/", 1)
            log.info(
                "aborting the multipart upload %s of %s: abandoned",
                upload,
                record.meta_value(OBJECT),
            )
            await _end_upload(state, bucket, upload)
            ended += 1
    orphans: dict[tuple[str, str], list[str]] = {}
    async for record in state.index.records(Space.LIVE, PARTS):
        bucket, upload, _ = record.key[len(PARTS) :].rsplit("/", 2)
        if now_ms - record.modified_ms < 60_000:
            continue  # written in the last minute: its upload may be completing
        if await state.index.get(Space.LIVE, upload_key(bucket, upload)) is not None:
            continue
        owner = await state.index.get(Space.LIVE, record.meta_value(OBJECT) or "")
        if owner is not None and describe(owner).manifest and _uses(owner, upload):
            continue
        orphans.setdefault((bucket, upload), []).append(record.key)
    for keys in orphans.values():
        for key in keys:
            with contextlib.suppress(NotFound):
                await state.store.delete(key)
    return ended


def _uses(record: IndexRecord, upload: str) -> bool:
    """Return True if a manifest's record belongs to ``upload`` (its ``x-kfs-upload``)."""
    return record.meta_value("x-kfs-upload") == upload


async def clean_forever(state: Backing, abandoned_after: float) -> None:
    """Run clean_once every tenth of ``abandoned_after`` (at least every 10 minutes)."""
    interval = min(600.0, max(1.0, abandoned_after / 10))
    while True:
        await asyncio.sleep(interval)
        try:
            await clean_once(state, abandoned_after)
        except Exception:
            log.exception("cleaning multipart uploads failed; trying again later")
