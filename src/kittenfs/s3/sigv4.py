"""AWS Signature Version 4, pure: what a request's signature covers and how it is computed.

A signed request names its credential's scope (access key, date, region, service), the
headers it signed, and a signature over the *canonical request* (method, path, query,
those headers, and the payload's SHA-256 or ``UNSIGNED-PAYLOAD``).  The server derives the
same signing key from the credential's secret and compares signatures in constant time.
Chunked uploads (``aws-chunked``) sign each chunk with the previous chunk's signature, the
first one with the request's ("seed") signature.

References: the AWS "Signature Version 4 signing process" and "Signature Calculations for
the Authorization Header: Transferring Payload in Multiple Chunks" documents.
"""

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from .errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: x-amz-content-sha256 values of an aws-chunked body.
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING = frozenset({STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER})
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: Largest difference between a request's time and the server's, as AWS allows.
MAX_SKEW_SECONDS = 15 * 60
#: Longest validity of a presigned URL.
MAX_PRESIGNED_SECONDS = 7 * 24 * 3600

_CREDENTIAL = re.compile(r"([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_SPACES = re.compile(r" +")


@dataclass(frozen=True, slots=True)
class Signed:
    """What a signed request claims: who, when, what it signed, and its signature."""

    access_key: str
    date: str  # YYYYMMDD, the scope's date
    region: str
    service: str
    amz_date: str  # YYYYMMDDTHHMMSSZ
    signed_headers: tuple[str, ...]
    signature: str
    presigned_seconds: int | None = None  # X-Amz-Expires of a presigned URL

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"

    def moment(self) -> float:
        """Return the request's time (seconds since the epoch)."""
        try:
            return datetime.strptime(self.amz_date, _AMZ_DATE).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise S3Error(
                "AccessDenied", f"X-Amz-Date {self.amz_date!r} is not YYYYMMDDTHHMMSSZ"
            ) from None


def _credential(value: str, code: str) -> tuple[str, str, str, str]:
    match = _CREDENTIAL.fullmatch(value.strip())
    if not match:
        raise S3Error(
            code, f"the credential {value!r} is not <key>/<date>/<region>/s3/aws4_request"
        )
    access, date, region, service = match.groups()
    return access, date, region, service


def parse_header(value: str, amz_date: str | None) -> Signed:
    """Return what an ``Authorization: AWS4-HMAC-SHA256 ...`` header claims."""
    code = "AuthorizationHeaderMalformed"
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise S3Error(
            code if algorithm.startswith("AWS4") else "InvalidArgument",
            f"unsupported authorization type {algorithm!r}: use {ALGORITHM}",
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field = part.strip().partition("=")
        if sep:
            fields[name] = field
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        raise S3Error(code, "the header needs Credential, SignedHeaders and Signature")
    if not amz_date:
        raise S3Error("AccessDenied", "the request has no X-Amz-Date or Date header")
    return Signed(
        *_credential(fields["Credential"], code),
        amz_date,
        tuple(fields["SignedHeaders"].split(";")),
        fields["Signature"],
    )


def parse_query(query: Mapping[str, str]) -> Signed:
    """Return what a presigned URL's ``X-Amz-*`` parameters claim."""
    code = "AuthorizationQueryParametersError"
    needed = ("X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature")
    missing = [name for name in needed if name not in query]
    if query.get("X-Amz-Algorithm") != ALGORITHM or missing:
        raise S3Error(code, f"a presigned URL needs X-Amz-Algorithm={ALGORITHM} and {needed}")
    expires = query.get("X-Amz-Expires", "")
    if not expires.isdigit() or not 0 < int(expires) <= MAX_PRESIGNED_SECONDS:
        raise S3Error(code, f"X-Amz-Expires must be 1..{MAX_PRESIGNED_SECONDS} seconds")
    return Signed(
        *_credential(query["X-Amz-Credential"], code),
        query["X-Amz-Date"],
        tuple(query["X-Amz-SignedHeaders"].split(";")),
        query["X-Amz-Signature"],
        int(expires),
    )


def uri_encode(text: str, slash: bool = True) -> str:
    """Encode as SigV4 does: every byte but A-Z a-z 0-9 - . _ ~ (and ``/`` if ``slash``)."""
    return quote(text, safe="-._~/" if slash else "-._~")


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Return a raw query string's (name, value) pairs, percent-decoded (``+`` is a plus)."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, Sequence[str]],
    signed_headers: Sequence[str],
    payload: str,
) -> str:
    """Return the canonical request: ``path`` decoded, ``query`` pairs decoded (without
    X-Amz-Signature), ``headers`` by lower-case name (every value of each)."""
    encoded = sorted((uri_encode(k, False), uri_encode(v, False)) for k, v in query)
    lines = [
        method,
        uri_encode(path),
        "&".join(f"{k}={v}" for k, v in encoded),
        *(
            f"{name}:{','.join(_SPACES.sub(' ', v.strip()) for v in headers.get(name, ()))}"
            for name in signed_headers
        ),
        "",
        ";".join(signed_headers),
        payload,
    ]
    return "\n".join(lines)


def string_to_sign(signed: Signed, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{signed.amz_date}\n{signed.scope}\n{digest}"


def signing_key(secret: str, signed: Signed) -> bytes:
    """Return the key that signs for ``signed``'s scope."""
    key = f"AWS4{secret}".encode()
    for part in (signed.date, signed.region, signed.service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def matches(expected: str, given: str) -> bool:
    """Compare two signatures in constant time."""
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))


def chunk_string(signed: Signed, previous: str, chunk_sha256: str) -> str:
    """Return the string a chunk's signature signs (``previous``: the last signature)."""
    return (
        f"{ALGORITHM}-PAYLOAD\n{signed.amz_date}\n{signed.scope}\n{previous}\n"
        f"{EMPTY_SHA256}\n{chunk_sha256}"
    )


def trailer_string(signed: Signed, previous: str, trailer: bytes) -> str:
    """Return the string a trailer's signature signs."""
    digest = hashlib.sha256(trailer).hexdigest()
    return f"{ALGORITHM}-TRAILER\n{signed.amz_date}\n{signed.scope}\n{previous}\n{digest}"


def authorize(
    method: str,
    target: str,
    host: str,
    access_key: str,
    secret: str,
    payload: str = UNSIGNED_PAYLOAD,
    headers: Mapping[str, str] | None = None,
    region: str = "us-east-1",
    now: datetime | None = None,
) -> dict[str, str]:
    """Return the headers that sign a request as a client does (``Authorization`` and the
    ``x-amz-*`` it covers), for load generators and tests that speak S3 without an SDK.

    ``target`` is the raw path and query (percent-encoded, as sent); ``payload`` the body's
    SHA-256 or ``UNSIGNED-PAYLOAD``; every header of ``headers`` is signed too.
    """
    moment = (now or datetime.now(UTC)).strftime(_AMZ_DATE)
    signed_values = {
        "host": host,
        "x-amz-content-sha256": payload,
        "x-amz-date": moment,
        **{name.lower(): value for name, value in (headers or {}).items()},
    }
    names = tuple(sorted(signed_values))
    claim = Signed(access_key, moment[:8], region, "s3", moment, names, "")
    path, _, raw_query = target.partition("?")
    canonical = canonical_request(
        method,
        unquote(path),
        query_pairs(raw_query),
        {name: [value] for name, value in signed_values.items()},
        names,
        payload,
    )
    signature = sign(signing_key(secret, claim), string_to_sign(claim, canonical))
    credential = f"{access_key}/{claim.scope}"
    return {
        **(headers or {}),
        "x-amz-content-sha256": payload,
        "x-amz-date": moment,
        "Authorization": (
            f"{ALGORITHM} Credential={credential}, SignedHeaders={';'.join(names)}, "
            f"Signature={signature}"
        ),
    }
