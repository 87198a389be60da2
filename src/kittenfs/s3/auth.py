"""Who sent an S3 request: AWS Signature V4 checked against the master's credential store.

A credential's access key and secret (credentials.py) are an S3 key pair; its role and
prefix apply as on the native API (a key confined to ``/photos/`` is a key for bucket
``photos``).  A request without a signature is anonymous and may do what the master's
``--anonymous`` allows.  With auth off (no ``--admin-token``, no ``--anonymous``), every
request may do everything and signatures are not checked, as on the native API.
"""

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

from aiohttp import web

from ..credentials import Role, secret_of
from ..master.access import Access, Caller
from . import sigv4
from .errors import S3Error


@dataclass(frozen=True, slots=True)
class Verified:
    """An authenticated request: its caller, and what its body's chunks must be signed with
    (``key`` is None when they are not checked)."""

    caller: Caller
    payload: str  # x-amz-content-sha256, or UNSIGNED-PAYLOAD
    signed: sigv4.Signed | None = None
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The key that checks signatures of one credential for one day's scope, and who the
    credential is."""

    key: bytes
    caller: Caller


class Keys(Protocol):
    """Where signatures are checked against: a master's credential store (MasterKeys), or
    an S3 gateway's master (gateway.py)."""

    @property
    def enabled(self) -> bool:
        """Auth is on: signatures are checked."""
        ...

    @property
    def anonymous_role(self) -> Role | None:
        """What an unsigned request may do."""
        ...

    async def signing_key(self, signed: sigv4.Signed) -> SigningKey | None:
        """Return the signing key of ``signed``'s credential and scope; None if there is no
        such credential (unknown, revoked or expired)."""
        ...


class MasterKeys:
    """The Keys of the master's own credential store."""

    def __init__(self, access: Access) -> None:
        self.access = access

    @property
    def enabled(self) -> bool:
        return self.access.enabled

    @property
    def anonymous_role(self) -> Role | None:
        return self.access.anonymous_role

    async def signing_key(self, signed: sigv4.Signed) -> SigningKey | None:
        credential = await self.access.credential(signed.access_key)
        if credential is None:
            return None
        key = sigv4.signing_key(secret_of(self.access.master_key, credential), signed)
        caller = Caller(credential.access_key, Role.named(credential.role), credential.prefix)
        return SigningKey(key, caller)


async def authenticate(request: web.Request, access: Keys) -> Verified:
    """Return the caller of ``request``; raise S3Error if its signature does not hold."""
    payload = request.headers.get("x-amz-content-sha256", sigv4.UNSIGNED_PAYLOAD)
    header = request.headers.get("Authorization")
    query = request.query
    if header is not None:
        if header.startswith("AWS "):
            raise S3Error("InvalidRequest", "Signature V2 is not supported: sign with V4")
        if "x-amz-content-sha256" not in request.headers:
            raise S3Error("InvalidRequest", "missing required header x-amz-content-sha256")
        signed = sigv4.parse_header(header, _amz_date(request))
    elif "X-Amz-Algorithm" in query or "X-Amz-Signature" in query:
        signed = sigv4.parse_query(query)
    elif "AWSAccessKeyId" in query:
        raise S3Error("InvalidRequest", "Signature V2 URLs are not supported: sign with V4")
    else:
        return Verified(Caller(role=access.anonymous_role), payload)
    if not access.enabled:
        return Verified(Caller(role=Role.ADMIN), payload)
    _check_time(signed, time.time())
    found = await access.signing_key(signed)
    if found is None:
        raise S3Error(
            "InvalidAccessKeyId", "the access key does not exist, or was revoked or expired"
        )
    key = found.key
    pairs = [
        (name, value)
        for name, value in sigv4.query_pairs(request.rel_url.raw_query_string)
        if name != "X-Amz-Signature"
    ]
    headers = {name: request.headers.getall(name, []) for name in signed.signed_headers}
    canonical = sigv4.canonical_request(
        request.method,
        request.path,
        pairs,
        headers,
        signed.signed_headers,
        sigv4.UNSIGNED_PAYLOAD if signed.presigned_seconds is not None else payload,
    )
    expected = sigv4.sign(key, sigv4.string_to_sign(signed, canonical))
    if not sigv4.matches(expected, signed.signature):
        raise S3Error(
            "SignatureDoesNotMatch",
            "the request signature we calculated does not match the signature you provided",
        )
    return Verified(found.caller, payload, signed, key)


def _amz_date(request: web.Request) -> str | None:
    """Return the request's time as YYYYMMDDTHHMMSSZ, from X-Amz-Date or Date."""
    amz = request.headers.get("x-amz-date")
    if amz:
        return amz
    date = request.headers.get("Date")
    if not date:
        return None
    try:
        return parsedate_to_datetime(date).strftime("%Y%m%dT%H%M%SZ")
    except (TypeError, ValueError):
        raise S3Error("AccessDenied", f"the Date header {date!r} is not a date") from None


def _check_time(signed: sigv4.Signed, now: float) -> None:
    if signed.amz_date[:8] != signed.date:
        raise S3Error("SignatureDoesNotMatch", "the credential's date is not the request's")
    moment = signed.moment()
    if signed.presigned_seconds is None:
        if abs(now - moment) > sigv4.MAX_SKEW_SECONDS:
            raise S3Error(
                "RequestTimeTooSkewed",
                "the difference between the request time and the server's time is too large",
            )
        return
    if now > moment + signed.presigned_seconds:
        raise S3Error("AccessDenied", "Request has expired")
    if moment > now + sigv4.MAX_SKEW_SECONDS:
        raise S3Error("AccessDenied", "the presigned URL is not valid yet")
