"""One S3 request as the operations see it: the master's state, who asked, and what for."""

import secrets
from dataclasses import dataclass, field

from aiohttp import web

from ..credentials import Role, covers, listing_prefix
from ..master.state import MasterState
from ..records import Bucket
from .auth import Verified
from .errors import S3Error

#: Part numbers run from 1 to this, as S3's.
MAX_PART_NUMBER = 10_000


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
    state: MasterState
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

    async def existing_bucket(self) -> Bucket:
        """Return the request's bucket; NoSuchBucket if there is none."""
        bucket = await self.state.index.bucket(self.bucket)
        if bucket is None:
            raise S3Error(
                "NoSuchBucket", "the specified bucket does not exist", BucketName=self.bucket
            )
        return bucket
