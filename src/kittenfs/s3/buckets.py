"""Bucket operations: a bucket is the key prefix ``/<name>/`` made visible to S3.

CreateBucket stores the bucket's marker, an empty value ``/_s3/buckets/<name>``; the keys
under its prefix, written through S3 or the native API, are its objects.  Creating a
bucket over a prefix that already holds native keys adopts them.  A bucket is deleted only
when it holds no object; its multipart uploads in progress are aborted with it.
"""

import ipaddress
import re

from aiohttp import web

from ..credentials import Role
from ..master.index import Space
from ..streaming import one_chunk
from . import multipart, xml
from .call import BUCKETS, LOCATION, Bucket, Call, bucket_marker, bucket_prefix
from .errors import S3Error
from .objects import delete_key, put_value

#: The most buckets one ListBuckets answer shows (S3: 10,000).
MAX_BUCKETS_LISTED = 10_000
_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def check_name(name: str) -> None:
    """Raise InvalidBucketName unless ``name`` follows S3's bucket naming rules."""
    bad = (
        not _NAME.fullmatch(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or name.startswith("xn--")
        or name.endswith("-s3alias")
        or _is_ip(name)
    )
    if bad:
        raise S3Error("InvalidBucketName", "the specified bucket is not valid", BucketName=name)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


async def list_buckets(call: Call) -> web.Response:
    """GET /: the buckets the caller may list, in name order; ``max-buckets`` pages them
    (the ContinuationToken is the last name shown), ``prefix`` picks them by name."""
    call.require_listing("/")
    query = call.request.query
    limit_text = query.get("max-buckets", str(MAX_BUCKETS_LISTED))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_BUCKETS_LISTED:
        raise S3Error("InvalidArgument", f"max-buckets must be from 1 to {MAX_BUCKETS_LISTED}")
    after, prefix = query.get("continuation-token", ""), query.get("prefix", "")
    visible: list[Bucket] = []
    async for marker in call.state.index.records(Space.LIVE, BUCKETS + prefix, BUCKETS + after):
        bucket = Bucket.of(marker)
        if bucket.name <= after:
            continue
        try:
            call.require_listing(bucket_prefix(bucket.name))
        except S3Error:
            continue
        visible.append(bucket)
        if len(visible) > int(limit_text):
            break
    shown = visible[: int(limit_text)]
    body = xml.document(
        "ListAllMyBucketsResult",
        "<Owner>" + xml.elements(ID=call.owner, DisplayName=call.owner) + "</Owner>",
        "<Buckets>",
        [
            "<Bucket>"
            + xml.elements(Name=b.name, CreationDate=xml.timestamp(b.created_ms))
            + "</Bucket>"
            for b in shown
        ],
        "</Buckets>",
        xml.elements(
            ContinuationToken=shown[-1].name if len(visible) > len(shown) else None,
            Prefix=prefix or None,
        ),
    )
    return web.Response(body=body, content_type="application/xml")


async def create_bucket(call: Call) -> web.Response:
    """PUT /<bucket>: 200, also if it exists (as S3 answers in its first region,
    us-east-1: buckets have no owner here, every credential is the cluster's)."""
    check_name(call.bucket)
    call.require(Role.WRITE, bucket_prefix(call.bucket))
    raw = await call.request.read()
    # A CreateBucketConfiguration's LocationConstraint is kept and answered back; every
    # bucket is in this cluster whatever it names.
    location = (xml.text(xml.parse(raw), "LocationConstraint") or "") if raw.strip() else ""
    marker = bucket_marker(call.bucket)
    async with call.state.store.locks.hold(bucket_prefix(call.bucket)):
        if await call.state.index.get(Space.LIVE, marker) is None:
            meta = ((LOCATION, location.strip()),) if location.strip() else ()
            await put_value(call, marker, one_chunk(b""), 0, meta)
    return web.Response(headers={"Location": f"/{call.bucket}"})


async def head_bucket(call: Call) -> web.Response:
    """HEAD /<bucket>: 200 if it exists (404 without a body if not)."""
    call.require_listing(bucket_prefix(call.bucket))
    await call.existing_bucket()
    return web.Response(headers={"x-amz-bucket-region": "us-east-1"})


async def bucket_location(call: Call) -> web.Response:
    """GET /<bucket>?location: the LocationConstraint the bucket was created with."""
    call.require_listing(bucket_prefix(call.bucket))
    bucket = await call.existing_bucket()
    body = xml.document("LocationConstraint", xml.escape(bucket.location))
    return web.Response(body=body, content_type="application/xml")


async def delete_bucket(call: Call) -> web.Response:
    """DELETE /<bucket>: 204; BucketNotEmpty while it holds an object.  Its multipart
    uploads in progress are aborted with it, as S3 does (s3-tests' clean-up counts on it)."""
    call.require(Role.WRITE, bucket_prefix(call.bucket))
    async with call.state.store.locks.hold(bucket_prefix(call.bucket)):
        await call.existing_bucket()
        if await anext(
            aiter(call.state.index.records(Space.LIVE, bucket_prefix(call.bucket))), None
        ):
            raise S3Error(
                "BucketNotEmpty",
                "the bucket you tried to delete is not empty",
                BucketName=call.bucket,
            )
        await multipart.abort_all(call.state, call.bucket)
        await delete_key(call, bucket_marker(call.bucket))
    return web.Response(status=204)
