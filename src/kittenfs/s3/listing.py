"""Listing a bucket: ListObjects (v1), ListObjectsV2 and ListObjectVersions.

A page is read from the index in key order (UTF-8 byte order, as S3 lists), from the marker
on, so a listing of a large bucket never holds more than a page.  With a delimiter, the keys
that share a common prefix count once (as that prefix), and the index is then read again
from just past the prefix instead of through every key under it.
"""

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

from ..master.index import Space
from ..records import IndexRecord
from . import xml
from .call import Call, bucket_prefix
from .errors import S3Error
from .reading import describe

#: Most keys a page of a listing holds, as S3.
MAX_KEYS = 1000


@dataclass
class Page:
    """One page of a listing: objects and common prefixes, and whether more follow."""

    objects: list[IndexRecord] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    last: str = ""  # the last object name or common prefix given: the next marker


def _past(prefix: str) -> str:
    """Return the least string greater than every string that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


async def scan(call: Call, prefix: str, delimiter: str, after: str, limit: int) -> Page:
    """Return the page of names under ``prefix`` that come after ``after``."""
    base = bucket_prefix(call.bucket)
    page = Page()
    if limit == 0:
        return page
    start = base + max(prefix, after)
    count = 0
    while True:
        restart = None
        async for record in call.state.index.records(Space.LIVE, base + prefix, start):
            name = record.key[len(base) :]
            if name <= after:
                continue
            common = None
            if delimiter:
                at = name.find(delimiter, len(prefix))
                if at >= 0:
                    common = name[: at + len(delimiter)]
            if common is not None and common <= after:
                restart = base + _past(common)
                break
            if count == limit:
                page.truncated = True
                return page
            count += 1
            if common is not None:
                page.prefixes.append(common)
                page.last = common
                restart = base + _past(common)
                break
            page.objects.append(record)
            page.last = name
        if restart is None:
            return page
        start = restart


def _max_keys(call: Call) -> int:
    text = call.request.query.get("max-keys", str(MAX_KEYS))
    if not text.isdigit():
        raise S3Error("InvalidArgument", "max-keys must be a non-negative integer")
    return min(int(text), MAX_KEYS)


def _encoder(call: Call) -> Callable[[str], str]:
    kind = call.request.query.get("encoding-type")
    if kind is None:
        return lambda name: name
    if kind != "url":
        raise S3Error("InvalidArgument", "encoding-type must be url")
    return lambda name: quote(name, safe="/")


def _object(record: IndexRecord, name: str, owner: str | None, version: bool = False) -> str:
    info = describe(record)
    fields = xml.elements(
        Key=name,
        VersionId="null" if version else None,
        IsLatest=True if version else None,
        LastModified=xml.timestamp(record.modified_ms),
        ETag=f'"{info.etag}"',
        Size=info.size,
        StorageClass="STANDARD",
    )
    if owner is not None:
        fields += "<Owner>" + xml.elements(ID=owner, DisplayName=owner) + "</Owner>"
    tag = "Version" if version else "Contents"
    return f"<{tag}>{fields}</{tag}>"


async def _start(call: Call) -> tuple[str, str]:
    call.require_listing(bucket_prefix(call.bucket))
    await call.existing_bucket()
    query = call.request.query
    return query.get("prefix", ""), query.get("delimiter", "")


async def list_objects(call: Call) -> web.Response:
    """GET /<bucket> (ListObjects, v1): a page from ``marker`` on."""
    prefix, delimiter = await _start(call)
    query = call.request.query
    marker = query.get("marker", "")
    limit = _max_keys(call)
    page = await scan(call, prefix, delimiter, marker, limit)
    encode = _encoder(call)
    body = xml.document(
        "ListBucketResult",
        xml.elements(
            Name=call.bucket,
            Prefix=prefix,  # not encoded in v1 (clients do not decode it)
            Marker=encode(marker),
            NextMarker=encode(page.last) if page.truncated and delimiter else None,
            MaxKeys=limit,
            Delimiter=encode(delimiter) if delimiter else None,
            EncodingType=query.get("encoding-type"),
            IsTruncated=page.truncated,
        ),
        (_object(r, encode(r.key[len(call.bucket) + 2 :]), call.owner) for r in page.objects),
        _prefixes(page, encode),
    )
    return web.Response(body=body, content_type="application/xml")


def _prefixes(page: Page, encode) -> str:  # type: ignore[no-untyped-def]
    return "".join(
        "<CommonPrefixes>" + xml.element("Prefix", encode(p)) + "</CommonPrefixes>"
        for p in page.prefixes
    )


def _token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii")


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError):
        raise S3Error("InvalidArgument", "the continuation token is not valid") from None


async def list_objects_v2(call: Call) -> web.Response:
    """GET /<bucket>?list-type=2: a page from ``continuation-token`` or ``start-after`` on."""
    prefix, delimiter = await _start(call)
    query = call.request.query
    token = query.get("continuation-token")
    start_after = query.get("start-after", "")
    after = _untoken(token) if token is not None else start_after
    limit = _max_keys(call)
    page = await scan(call, prefix, delimiter, after, limit)
    encode = _encoder(call)
    owner = call.owner if query.get("fetch-owner", "").lower() == "true" else None
    body = xml.document(
        "ListBucketResult",
        xml.elements(
            Name=call.bucket,
            Prefix=encode(prefix),
            StartAfter=encode(start_after) if start_after else None,
            ContinuationToken=token,
            NextContinuationToken=_token(page.last) if page.truncated else None,
            KeyCount=len(page.objects) + len(page.prefixes),
            MaxKeys=limit,
            Delimiter=encode(delimiter) if delimiter else None,
            EncodingType=query.get("encoding-type"),
            IsTruncated=page.truncated,
        ),
        (_object(r, encode(r.key[len(call.bucket) + 2 :]), owner) for r in page.objects),
        _prefixes(page, encode),
    )
    return web.Response(body=body, content_type="application/xml")


async def list_object_versions(call: Call) -> web.Response:
    """GET /<bucket>?versions: each object as its one version, "null" (no versioning)."""
    prefix, delimiter = await _start(call)
    query = call.request.query
    marker = query.get("key-marker", "")
    limit = _max_keys(call)
    page = await scan(call, prefix, delimiter, marker, limit)
    encode = _encoder(call)
    body = xml.document(
        "ListVersionsResult",
        xml.elements(
            Name=call.bucket,
            Prefix=encode(prefix),
            KeyMarker=encode(marker),
            VersionIdMarker=query.get("version-id-marker", ""),
            NextKeyMarker=encode(page.last) if page.truncated else None,
            NextVersionIdMarker="null" if page.truncated else None,
            MaxKeys=limit,
            Delimiter=encode(delimiter) if delimiter else None,
            EncodingType=query.get("encoding-type"),
            IsTruncated=page.truncated,
        ),
        (
            _object(r, encode(r.key[len(call.bucket) + 2 :]), call.owner, version=True)
            for r in page.objects
        ),
        _prefixes(page, encode),
    )
    return web.Response(body=body, content_type="application/xml")
