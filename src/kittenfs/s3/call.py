"""One S3 request as the operations see it: the master's state, who asked, and what for."""

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from ..credentials import Role, covers, listing_prefix
from ..master.index import Space
from ..master.reader import Reader
from ..master.write_path import Store
from ..records import IndexRecord
from .auth import Verified
from .errors import S3Error

#: Part numbers run from 1 to this, as S3's.
MAX_PART_NUMBER = 10_000
#: Where buckets are: an empty value ``/_s3/buckets/<name>`` per bucket, so that its
#: replicas (and ``kittenfs rebuild``) keep it as they keep every key.
BUCKETS = "/_s3/buckets/"
#: The marker's ``meta`` entry holding the bucket's LocationConstraint.
LOCATION = "x-kfs-location"


class Records(Protocol):
    """What the S3 operations read of the index."""

    async def get(self, space: Space, key: str) -> IndexRecord | None: ...

    def records(
        self, space: Space, prefix: str = "", start: str = ""
    ) -> AsyncIterator[IndexRecord]: ...


class Backing(Protocol):
    """What the S3 operations use of a master: its index, read path and write path.

    A master's state (master/state.py) is one.  An S3 gateway's (gateway.py) reads the
    index over HTTP and has no write path: it forwards every operation that writes to the
    master, so that one process orders the writes of a key.
    """

    @property
    def index(self) -> Records: ...

    @property
    def reader(self) -> Reader: ...

    @property
    def store(self) -> Store: ...


@dataclass(frozen=True, slots=True)
class Bucket:
    """An S3 bucket: the key prefix ``/<name>/`` made visible to the S3 API (docs/s3.md)."""

    name: str
    created_ms: int
    location: str = ""  # the LocationConstraint it was created with ("": us-east-1)

    @classmethod
    def of(cls, marker: IndexRecord) -> "Bucket":
        """Return the bucket whose marker key has the record ``marker``."""
        location = marker.meta_value(LOCATION) or ""
        return cls(marker.key[len(BUCKETS) :], marker.created_ms, location)


def bucket_marker(bucket: str) -> str:
    """Return the key that records a bucket."""
    return BUCKETS + bucket


def bucket_prefix(bucket: str) -> str:
    """Return the key prefix of a bucket's objects: ``/<bucket>/``."""
    return f"/{bucket}/"


def object_key(bucket: str, name: str) -> str:
    """Return the kittenFS key of object ``name`` in ``bucket``."""
    return f"/{bucket}/{name}"


def new_request_id() -> str:
    return secrets.token_hex(8).upper()


@dataclass
class Call:
    """An S3 request on its way through the operations."""

    request: web.Request
    state: Backing
    verified: Verified
    bucket: str = ""
    key: str = ""  # the object's name in its bucket ("" for bucket operations)
    request_id: str = field(default_factory=new_request_id)

    @property
    def native_key(self) -> str:
        return object_key(self.bucket, self.key)

    @property
    def owner(self) -> str:
        """The id S3 documents show as the owner (the caller's access key)."""
        return self.verified.caller.credential

    def part_number(self) -> int:
        """Return the request's ``partNumber``; InvalidArgument unless 1..MAX_PART_NUMBER."""
        text = self.request.query.get("partNumber", "")
        if not text.isdigit() or not 1 <= int(text) <= MAX_PART_NUMBER:
            raise S3Error(
                "InvalidArgument", f"partNumber must be an integer from 1 to {MAX_PART_NUMBER}"
            )
        return int(text)

    def require(self, role: Role, key: str | None = None) -> None:
        """Raise AccessDenied unless the caller has ``role`` on ``key`` (the request's)."""
        caller = self.verified.caller
        if (
            caller.role is None
            or caller.role < role
            or not covers(caller.prefix, key or self.native_key)
        ):
            raise S3Error("AccessDenied", f"{caller.describe()} may not do this")

    def require_listing(self, prefix: str) -> str:
        """Return the key prefix the caller may list of ``prefix``; AccessDenied if none."""
        caller = self.verified.caller
        scoped = listing_prefix(caller.prefix, prefix)
        if caller.role is None or scoped is None:
            raise S3Error("AccessDenied", f"{caller.describe()} may not list {prefix}")
        return scoped

    async def existing_bucket(self, name: str | None = None) -> Bucket:
        """Return the request's bucket (or ``name``); NoSuchBucket if there is none."""
        name = name or self.bucket
        marker = await self.state.index.get(Space.LIVE, bucket_marker(name))
        if marker is None:
            raise S3Error("NoSuchBucket", "the specified bucket does not exist", BucketName=name)
        return Bucket.of(marker)
