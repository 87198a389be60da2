"""Object operations: PUT (and COPY), GET, HEAD and DELETE of ``/<bucket>/<key>``.

Each is a call to the master's write path (write_path.Store) or read path (reader.Reader):
the object is the kittenFS key ``/<bucket>/<key>``; what S3 says of it beside its bytes
(Content-Type, ``x-amz-meta-*``, its checksum) is kept in its index record's ``meta``.
GETs are streamed through this process: S3 clients do not follow redirects.
"""

import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import unquote

from aiohttp import web

from ..credentials import Role
from ..errors import InvalidRequest, MetadataTooLarge, NotFound, TooLarge
from ..httputil import HTTPProblem, parse_range, range_asked
from ..keys import InvalidKey, check_key
from ..master.read_path import send_stream
from ..master.reader import Found
from ..records import IndexRecord
from . import xml
from .body import CHECKSUM_HEADER, request_body
from .call import Call, object_key
from .errors import S3Error
from .reading import describe, object_chunks, part_sizes

#: Request headers stored with an object and returned with it.
CONTENT_HEADERS = (
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
)
USER_META = "x-amz-meta-"
#: Most bytes of user metadata (names and values), as S3 allows.
MAX_USER_META = 2048
DEFAULT_TYPE = "binary/octet-stream"
#: The only form UploadPartCopy's x-amz-copy-source-range takes.
COPY_RANGE = re.compile(r"bytes=(\d+)-(\d+)")
#: GET query parameters that override a response header (presigned downloads use them).
OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
_ACCEPTED_ACLS = frozenset({"private", "bucket-owner-full-control"})
#: Request headers of features the S3 layer does not have: refused, never ignored.
_UNSUPPORTED = (
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
    "x-amz-tagging",
    "x-amz-website-redirect-location",
    "x-amz-grant-read",
    "x-amz-grant-write",
    "x-amz-grant-full-control",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
)


def check_object_name(name: str) -> str:
    """Return the kittenFS key of an object name; raise if S3 or kittenFS refuses it."""
    if len(name.encode("utf-8", "surrogatepass")) > 1024:
        raise S3Error("KeyTooLongError", "your key is too long")
    return name


def refuse_unsupported(headers: Mapping[str, str]) -> None:
    """Raise NotImplemented for a request that asks for a feature S3 has and this does not."""
    for name in _UNSUPPORTED:
        if name in headers:
            raise S3Error("NotImplemented", f"{name} is not supported")
    acl = headers.get("x-amz-acl")
    if acl is not None and acl not in _ACCEPTED_ACLS:
        raise S3Error("NotImplemented", f"x-amz-acl {acl!r}: objects are private to the cluster")


def meta_from(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Return the metadata a PUT's headers give an object."""
    meta = []
    for name in CONTENT_HEADERS:
        value = headers.get(name)
        if name == "content-encoding" and value is not None:
            codings = [c.strip() for c in value.split(",") if c.strip() != "aws-chunked"]
            value = ", ".join(codings) or None
        if value is not None:
            meta.append((name, value))
    user = [
        (name.lower(), value)
        for name, value in headers.items()
        if name.lower().startswith(USER_META)
    ]
    if sum(len(name) - len(USER_META) + len(value) for name, value in user) > MAX_USER_META:
        raise S3Error("MetadataTooLarge", f"user metadata is over {MAX_USER_META} bytes")
    return (*meta, *user)


async def put_object(call: Call) -> web.Response:
    """PUT /<bucket>/<key>: store the body (or a copy, with x-amz-copy-source)."""
    call.require(Role.WRITE)
    await call.existing_bucket()
    check_object_name(call.key)
    headers = call.request.headers
    refuse_unsupported(headers)
    if "x-amz-copy-source" in headers:
        return await copy_object(call)
    body = request_body(call.request, call.verified)
    meta = meta_from(headers)
    result = await put_value(
        call, call.native_key, body.chunks, body.size, meta, body.check, write_conditions(headers)
    )
    response_headers = {"ETag": f'"{result.md5}"'}
    response_headers.update((k, v) for k, v in result.meta if k.startswith(CHECKSUM_HEADER))
    return web.Response(headers=response_headers)


async def put_value(
    call: Call,
    key: str,
    chunks: AsyncIterator[bytes],
    size: int | None,
    meta: tuple[tuple[str, str], ...],
    finish: Callable[[int, str], tuple[tuple[str, str], ...]] | None = None,
    precondition: Callable[[IndexRecord | None], None] | None = None,
) -> IndexRecord:
    try:
        result = await call.state.store.put(
            check_key(key), chunks, size, None, meta, finish, precondition
        )
    except InvalidKey as exc:
        raise S3Error("InvalidArgument", str(exc)) from None
    except TooLarge as exc:
        raise S3Error("EntityTooLarge", str(exc)) from None
    except MetadataTooLarge as exc:
        raise S3Error("MetadataTooLarge", str(exc)) from None
    except InvalidRequest as exc:
        raise S3Error("IncompleteBody", str(exc)) from None
    return result.record


async def copy_object(call: Call) -> web.Response:
    """PUT /<bucket>/<key> with x-amz-copy-source: copy another object's bytes (and, with
    the COPY directive, its metadata)."""
    headers = call.request.headers
    bucket, name = parse_copy_source(headers["x-amz-copy-source"])
    chunks, size, found = await source_chunks(call, bucket, name, None)
    record = found.record
    directive = headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", f"unknown x-amz-metadata-directive {directive!r}")
    if record.key == call.native_key and directive == "COPY":
        raise S3Error(
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata, storage class, website redirect "
            "location or encryption attributes.",
        )
    kept = tuple((k, v) for k, v in record.meta if not k.startswith(("x-kfs-", CHECKSUM_HEADER)))
    meta = kept if directive == "COPY" else meta_from(headers)
    copied = await put_value(call, call.native_key, chunks, size, meta)
    body = xml.document(
        "CopyObjectResult",
        xml.elements(LastModified=xml.timestamp(copied.modified_ms), ETag=f'"{copied.md5}"'),
    )
    return web.Response(body=body, content_type="application/xml")


def parse_copy_source(value: str) -> tuple[str, str]:
    """Return the (bucket, key) an x-amz-copy-source header names."""
    path = unquote(value.split("?versionId=", 1)[0]).lstrip("/")
    bucket, _, key = path.partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "x-amz-copy-source must be <bucket>/<key>")
    return bucket, key


async def source_chunks(
    call: Call, bucket: str, name: str, range_header: str | None
) -> tuple[AsyncIterator[bytes], int, Found]:
    """Return the bytes of a copy's source object (the range ``range_header`` names, if
    any), their count and the source's record, after its x-amz-copy-source-if-* checks."""
    source = object_key(bucket, name)
    call.require(Role.READ, source)
    found = await _find(call, bucket, source)
    check_conditions(
        call.request.headers, found.record, prefix="x-amz-copy-source-", code="PreconditionFailed"
    )
    size = describe(found.record).size
    first, last = 0, size - 1
    if range_header is not None:
        span = COPY_RANGE.fullmatch(range_header)
        if span is None:
            raise S3Error("InvalidArgument", "x-amz-copy-source-range must be bytes=first-last")
        first, last = int(span[1]), int(span[2])
        if first > last or last >= size:
            raise S3Error(
                "InvalidRange",
                f"the x-amz-copy-source-range is not satisfiable: the source has {size} bytes",
            )
    return object_chunks(call.state.reader, found, first, last), last - first + 1, found


async def _find(call: Call, bucket: str, key: str) -> Found:
    await call.existing_bucket(bucket)
    found = await call.state.reader.find(key)
    if found is None:
        raise S3Error("NoSuchKey", "the specified key does not exist", Key=key.split("/", 2)[2])
    return found


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _etag_in(header: str, md5: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or f'"{md5}"' in tags or md5 in tags


def check_conditions(
    headers: Mapping[str, str], record: IndexRecord, prefix: str = "", code: str = "NotModified"
) -> None:
    """Apply If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since (each after
    ``prefix``): 412 PreconditionFailed, or ``code`` (304 on GET and HEAD) when the object
    has not changed."""
    modified = record.modified_ms // 1000
    etag = describe(record).etag
    if_match = headers.get(f"{prefix}If-Match")
    if if_match is not None:
        if not _etag_in(if_match, etag):
            raise S3Error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                Condition=f"{prefix}If-Match",
            )
    else:
        since = _http_date(headers.get(f"{prefix}If-Unmodified-Since"))
        if since is not None and modified > since:
            raise S3Error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                Condition=f"{prefix}If-Unmodified-Since",
            )
    if_none = headers.get(f"{prefix}If-None-Match")
    if if_none is not None:
        if _etag_in(if_none, etag):
            raise S3Error(code, "not modified")
    else:
        since = _http_date(headers.get(f"{prefix}If-Modified-Since"))
        if since is not None and modified <= since and since <= time.time():
            raise S3Error(code, "not modified")


def write_conditions(
    headers: Mapping[str, str],
) -> Callable[[IndexRecord | None], None] | None:
    """Return the check of a write's If-Match and If-None-Match against the object's ETag,
    made under the key's lock (write_path.Store.put): NoSuchKey for If-Match on a missing
    object, PreconditionFailed when a condition does not hold; None without conditions."""
    if_match, if_none = headers.get("If-Match"), headers.get("If-None-Match")
    if if_match is None and if_none is None:
        return None

    def check(live: IndexRecord | None) -> None:
        etag = describe(live).etag if live is not None else None
        if if_match is not None:
            if etag is None:
                raise S3Error("NoSuchKey", "If-Match names an object that does not exist")
            if not _etag_in(if_match, etag):
                raise S3Error(
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                    Condition="If-Match",
                )
        if if_none is not None and etag is not None and _etag_in(if_none, etag):
            raise S3Error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                Condition="If-None-Match",
            )

    return check


def object_headers(record: IndexRecord, checksum: bool) -> dict[str, str]:
    """Return the headers that describe an object in GET and HEAD answers."""
    headers = {
        "ETag": f'"{describe(record).etag}"',
        "Last-Modified": format_datetime(
            datetime.fromtimestamp(record.modified_ms // 1000, UTC), usegmt=True
        ),
        "Accept-Ranges": "bytes",
        "Content-Type": DEFAULT_TYPE,
    }
    for name, value in record.meta:
        if name.startswith(CHECKSUM_HEADER):
            if checksum:
                headers[name] = value
        elif not name.startswith("x-kfs-"):
            headers[name.title() if not name.startswith("x-amz-") else name] = value
    return headers


async def get_object(call: Call) -> web.StreamResponse:
    """GET or HEAD /<bucket>/<key>: the object (or a range of it), streamed through here."""
    call.require(Role.READ)
    request = call.request
    found = await _find(call, call.bucket, call.native_key)
    record = found.record
    checksum = request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
    headers = object_headers(record, checksum)
    try:
        check_conditions(request.headers, record)
    except S3Error as exc:
        if exc.code != "NotModified":
            raise
        return web.Response(
            status=304, headers={"ETag": headers["ETag"], "Last-Modified": headers["Last-Modified"]}
        )
    for param, header in OVERRIDES.items():
        if param in request.query:
            headers[header] = request.query[param]
    info = describe(record)
    size = info.size
    if "partNumber" in request.query:
        part, count = await _part_span(call, found)
        headers["x-amz-mp-parts-count"] = str(count)
        span = None if part == (0, size - 1) else part  # the whole object: a 200
    else:
        span = _span(request, size)
    if span is not None:
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{size}"
        for name in [h for h in headers if h.startswith(CHECKSUM_HEADER)]:
            del headers[name]  # a checksum is of the whole object
    status = 206 if span is not None else 200
    first, last = span if span is not None else (0, size - 1)
    if request.method == "HEAD":
        return web.Response(
            status=status, headers={**headers, "Content-Length": str(last - first + 1)}
        )
    reader = call.state.reader
    whole = span is None and not info.manifest and reader.whole_value(found, False)
    if size == 0 or whole:
        value = await reader.value(found) if size else b""
        return web.Response(status=status, body=value, headers=headers)
    response = web.StreamResponse(status=status, headers=headers)
    chunks = object_chunks(reader, found, first, last)
    return await send_stream(request, response, last - first + 1, chunks)


async def _part_span(call: Call, found: Found) -> tuple[tuple[int, int], int]:
    """Return the byte span of the part ``?partNumber=`` names, and the object's part count
    (a single PUT's object is one part); InvalidPart past the last part."""
    number = call.part_number()
    if range_asked(call.request.headers) is not None:
        raise S3Error("InvalidRequest", "a GET cannot name both a Range and a partNumber")
    sizes = await part_sizes(call.state.reader, found)
    if number > len(sizes):
        raise S3Error("InvalidPart", f"the object has {len(sizes)} part(s)", PartNumber=str(number))
    first = sum(sizes[: number - 1])
    return (first, first + sizes[number - 1] - 1), len(sizes)


def _span(request: web.Request, size: int) -> tuple[int, int] | None:
    """Return the byte span a Range asks for; None for the whole object (a Range S3 cannot
    parse is ignored, as S3 does); InvalidRange if it cannot be satisfied."""
    asked = range_asked(request.headers)
    if asked is None:
        return None
    try:
        return parse_range(asked, size)
    except HTTPProblem as exc:
        if exc.error == "range_not_satisfiable":
            raise S3Error(
                "InvalidRange",
                "The requested range is not satisfiable",
                ActualObjectSize=str(size),
            ) from None
        return None


async def delete_object(call: Call) -> web.Response:
    """DELETE /<bucket>/<key>: 204, whether or not it existed."""
    call.require(Role.WRITE)
    await call.existing_bucket()
    await delete_key(call, call.native_key)
    return web.Response(status=204)


async def delete_key(call: Call, key: str) -> None:
    """Delete one object's key; an absent one is already deleted."""
    with contextlib.suppress(NotFound):
        await call.state.store.delete(key)


async def delete_objects(call: Call) -> web.Response:
    """POST /<bucket>?delete: delete up to 1,000 objects; report each (errors only if Quiet)."""
    await call.existing_bucket()
    root = xml.parse(await call.request.read())
    if xml.local(root.tag) != "Delete":
        raise S3Error("MalformedXML", "the document's root must be Delete")
    quiet = (xml.text(root, "Quiet") or "").strip().lower() == "true"
    objects = xml.children(root, "Object")
    if not objects or len(objects) > 1000:
        raise S3Error("MalformedXML", "Delete must name 1 to 1,000 objects")
    results = []
    for node in objects:
        name = xml.text(node, "Key")
        if not name:
            raise S3Error("MalformedXML", "every Object needs a Key")
        key = object_key(call.bucket, name)
        try:
            call.require(Role.WRITE, key)
            await delete_key(call, key)
        except S3Error as exc:
            results.append(
                "<Error>" + xml.elements(Key=name, Code=exc.code, Message=exc.message) + "</Error>"
            )
            continue
        if not quiet:
            results.append("<Deleted>" + xml.element("Key", name) + "</Deleted>")
    body = xml.document("DeleteResult", results)
    return web.Response(body=body, content_type="application/xml")
