"""Request bodies of the S3 API: plain or ``aws-chunked``, with the checks S3 clients ask for.

- ``Content-MD5`` (base64 of the MD5): ``InvalidDigest`` if garbled, ``BadDigest`` if the
  body differs;
- ``x-amz-content-sha256`` with a hex digest: the body's SHA-256 must match
  (``XAmzContentSHA256Mismatch``);
- the checksums current SDKs send by default (``x-amz-checksum-crc32``/``crc32c``/
  ``crc64nvme``/``sha1``/``sha256``, in a header or in an aws-chunked trailer named by
  ``x-amz-trailer``; or only ``x-amz-sdk-checksum-algorithm``, asking the server to
  compute one): checked, stored with the object and returned when asked;
- aws-chunked bodies: each chunk's signature (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``)
  chained from the request's, and the trailer (``...-TRAILER`` variants).

Every check runs as the bytes stream to the replicas; ``Body.check`` is the write path's
last step before its commit (write_path.Store.put), so a body that fails one leaves nothing
visible.
"""

import base64
import binascii
import hashlib
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import crc32c
from aiohttp import web

from ..limits import body_chunks, paced
from . import sigv4
from .auth import Verified
from .errors import S3Error

#: Bytes read from a request at a time.
READ_CHUNK = 256 * 1024


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


class _CRC32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


class _CRC32C(_CRC32):
    def update(self, data: bytes) -> None:
        self.value = crc32c.crc32c(data, self.value)


class _CRC64NVME(_CRC32):
    """CRC64/NVME, by awscrt (what the AWS SDKs use); imported on first use: 70 ms."""

    def __init__(self) -> None:
        super().__init__()
        from awscrt import checksums

        self.crc64nvme = checksums.crc64nvme

    def update(self, data: bytes) -> None:
        self.value = self.crc64nvme(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(8, "big")


#: The checksum algorithms S3 clients send, by lower-case name.
ALGORITHMS: dict[str, Callable[[], Digest]] = {
    "crc32": _CRC32,
    "crc32c": _CRC32C,
    "crc64nvme": _CRC64NVME,
    "sha1": lambda: hashlib.sha1(usedforsecurity=False),
    "sha256": hashlib.sha256,
}
CHECKSUM_HEADER = "x-amz-checksum-"


@dataclass
class Body:
    """A request body as the write path takes it, and the checks it must pass."""

    chunks: AsyncIterator[bytes]
    size: int | None
    content_md5: bytes | None = None
    sha256: str | None = None  # the hex digest x-amz-content-sha256 promised
    algorithm: str | None = None  # the checksum to compute, store and return
    expected: str | None = None  # its value from a header (None: from the trailer, or none)
    digests: dict[str, Digest] = field(default_factory=dict)
    trailer: dict[str, str] = field(default_factory=dict)

    def check(self, size: int, md5: str) -> tuple[tuple[str, str], ...]:
        """Raise S3Error if the body that was stored is not the one the client sent; else
        return what to store with the object about its checksum (write_path's ``finish``)."""
        if self.content_md5 is not None and self.content_md5 != bytes.fromhex(md5):
            raise S3Error("BadDigest", "the Content-MD5 you specified did not match the body")
        if self.sha256 is not None and self.digests["payload"].digest().hex() != self.sha256:
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                "the x-amz-content-sha256 you provided does not match the body's SHA-256",
            )
        if self.algorithm is None:
            return ()
        expected = self.expected or self.trailer.get(CHECKSUM_HEADER + self.algorithm)
        if expected is not None and expected != self.checksum():
            raise S3Error(
                "BadDigest",
                f"the {self.algorithm.upper()} you specified did not match the calculated one",
            )
        return ((CHECKSUM_HEADER + self.algorithm, self.checksum()),)

    def checksum(self) -> str:
        """Return the body's checksum (base64, as S3 writes it) once it has been read."""
        assert self.algorithm is not None
        return base64.b64encode(self.digests[self.algorithm].digest()).decode("ascii")


def request_body(request: web.Request, verified: Verified) -> Body:
    """Return the body of ``request``, decoded and checked as its headers say."""
    headers = request.headers
    payload = verified.payload
    chunked = payload in sigv4.STREAMING
    if chunked:
        decoded = headers.get("x-amz-decoded-content-length", "")
        if not decoded.isdigit():
            raise S3Error("MissingContentLength", "aws-chunked needs x-amz-decoded-content-length")
        size: int | None = int(decoded)
    else:
        size = request.content_length
        if size is None and "chunked" not in headers.get("Transfer-Encoding", "").lower():
            raise S3Error("MissingContentLength", "you must provide the Content-Length header")
    body = Body(body_chunks(request, READ_CHUNK), size)
    if "Content-MD5" in headers:
        body.content_md5 = _content_md5(headers["Content-MD5"])
    if payload not in sigv4.STREAMING and payload != sigv4.UNSIGNED_PAYLOAD:
        if len(payload) != 64 or not all(c in "0123456789abcdef" for c in payload):
            raise S3Error("InvalidArgument", "x-amz-content-sha256 must be a hex SHA-256")
        body.sha256 = payload
        body.digests["payload"] = hashlib.sha256()
    _choose_checksum(body, headers)
    raw = _aws_chunks(request, verified, body.trailer) if chunked else body.chunks
    body.chunks = _digesting(raw, body.digests)
    return body


def _content_md5(value: str) -> bytes:
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 16:
        raise S3Error("InvalidDigest", "the Content-MD5 you specified is not valid")
    return digest


def _choose_checksum(body: Body, headers: Mapping[str, str]) -> None:
    """Pick the checksum algorithm the client asked for, if any, and its expected value."""
    named = [
        h[len(CHECKSUM_HEADER) :] for h in map(str.lower, headers) if h.startswith(CHECKSUM_HEADER)
    ]
    named = [n for n in named if n != "algorithm" and n != "type"]
    trailer = headers.get("x-amz-trailer", "").strip().lower()
    asked = headers.get("x-amz-sdk-checksum-algorithm", "").strip().lower()
    if trailer.startswith(CHECKSUM_HEADER):
        algorithm = trailer[len(CHECKSUM_HEADER) :]
    elif named:
        algorithm = named[0]
    elif asked:
        algorithm = asked
    else:
        return
    if algorithm not in ALGORITHMS:
        raise S3Error("InvalidRequest", f"checksum algorithm {algorithm!r} is not supported")
    if len(named) > 1:
        raise S3Error("InvalidRequest", "expecting a single x-amz-checksum- header")
    body.algorithm = algorithm
    body.digests[algorithm] = ALGORITHMS[algorithm]()
    if named and not trailer:
        value = headers[CHECKSUM_HEADER + algorithm].strip()
        size = len(body.digests[algorithm].digest())
        try:
            valid = len(base64.b64decode(value, validate=True)) == size
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise S3Error(
                "InvalidRequest", f"Value for x-amz-checksum-{algorithm} header is invalid."
            )
        body.expected = value


async def _digesting(
    chunks: AsyncIterator[bytes], digests: dict[str, Digest]
) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        for digest in digests.values():
            digest.update(chunk)
        yield chunk


async def _aws_chunks(
    request: web.Request, verified: Verified, trailer: dict[str, str]
) -> AsyncIterator[bytes]:
    """Yield the data of an aws-chunked body, checking each chunk's signature when the
    request's was checked; fill ``trailer`` with the trailing headers."""
    content = request.content
    signed = verified.signed
    checked = (
        verified.key is not None
        and signed is not None
        and verified.payload in (sigv4.STREAMING_SIGNED, sigv4.STREAMING_SIGNED_TRAILER)
    )
    previous = signed.signature if signed is not None else ""
    try:
        while True:
            line = await paced(request, content.readuntil(b"\r\n"))
            if not line.endswith(b"\r\n"):
                raise S3Error("IncompleteBody", "the aws-chunked body ended early")
            size_text, _, extension = line[:-2].decode("ascii").partition(";")
            size = int(size_text, 16)
            digest = hashlib.sha256()
            remaining = size
            while remaining:
                piece = await paced(request, content.readexactly(min(remaining, READ_CHUNK)))
                remaining -= len(piece)
                if checked:
                    digest.update(piece)
                yield piece
            if checked:
                assert signed is not None and verified.key is not None
                given = extension.partition("chunk-signature=")[2]
                expected = sigv4.sign(
                    verified.key, sigv4.chunk_string(signed, previous, digest.hexdigest())
                )
                if not sigv4.matches(expected, given):
                    raise S3Error(
                        "SignatureDoesNotMatch", "a chunk's signature does not match its data"
                    )
                previous = expected
            if size == 0:
                break
            if await paced(request, content.readexactly(2)) != b"\r\n":
                raise S3Error("IncompleteBody", "an aws-chunked chunk does not end in CRLF")
        await _read_trailer(request, trailer)
    except (ValueError, UnicodeDecodeError):
        raise S3Error("InvalidRequest", "the aws-chunked body is garbled") from None
    except EOFError:  # asyncio.IncompleteReadError
        raise S3Error("IncompleteBody", "the aws-chunked body ended early") from None


async def _read_trailer(request: web.Request, trailer: dict[str, str]) -> None:
    """Read the trailing headers of an aws-chunked body, up to its final empty line."""
    for _ in range(64):
        line = await paced(request, request.content.readuntil(b"\r\n"))
        if line in (b"\r\n", b""):
            return
        name, _, value = line.decode("ascii").strip().partition(":")
        trailer[name.strip().lower()] = value.strip()
    raise S3Error("InvalidRequest", "the aws-chunked trailer is too long")
