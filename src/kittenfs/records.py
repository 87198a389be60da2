"""Records: the byte formats kittenFS writes to LevelDB and to blob files.

Every record kept in LevelDB starts with a format byte (``FORMAT``) followed by compact JSON,
so a future format can be told apart and migrated (inline values and the master's id are raw
bytes).  Blob files start with a fixed binary header (``BlobHeader``) that repeats the key,
version, size and MD5, and inline values sit beside a BlobMeta that holds the same, so what a
worker holds names its keys and the master's index can be rebuilt from the workers.
docs/format.md describes both; golden tests pin them.
"""

import json
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import xxhash

#: Format byte that starts every LevelDB value written by this version.
FORMAT = 1

T = TypeVar("T")


class RecordError(ValueError):
    """Stored bytes do not decode as a record of this format."""


@dataclass(frozen=True, slots=True)
class IndexRecord:
    """The master's record of one version of a key: where its replicas are and what they hold.

    ``replicas`` are worker indices.  For a pending write, ``size`` is -1 and ``md5`` is "".
    ``meta`` holds what a client said of the value beside its bytes (the S3 API's
    Content-Type, ``x-amz-meta-*``...: lower-case header name, value), in the order given;
    a record without any stores no ``meta`` field, so such records keep their old bytes.
    """

    key: str
    version: str
    size: int
    md5: str
    replicas: tuple[int, ...]
    created_ms: int
    modified_ms: int
    meta: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Bucket:
    """An S3 bucket: the key prefix ``/<name>/`` made visible to the S3 API (docs/s3.md)."""

    name: str
    created_ms: int
    location: str = ""  # the LocationConstraint it was created with ("": us-east-1)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """The master's durable knowledge of one registered worker."""

    id: str
    index: int
    url: str
    registered_ms: int


@dataclass(frozen=True, slots=True)
class BlobMeta:
    """A worker's record of one blob it holds; ``inline`` blobs keep their bytes in LevelDB."""

    key: str
    version: str
    size: int
    md5: str
    inline: bool
    created_ms: int


class CopyState(StrEnum):
    """What a worker holds of one version of a key, as the master finds it."""

    GOOD = "good"  # the blob, intact as far as the check looked
    MISSING = "missing"  # no such blob
    CORRUPT = "corrupt"  # bytes that do not match the version's size or MD5


@dataclass(frozen=True, slots=True)
class BlobListing:
    """One blob as a worker lists it (``GET /blobs``, docs/api.md): its metadata and id."""

    blob: str
    key: str
    version: str
    size: int
    md5: str
    inline: bool
    created_ms: int

    @classmethod
    def of(cls, blob: str, meta: BlobMeta) -> "BlobListing":
        """Return the listing of the blob ``blob`` with metadata ``meta``."""
        return cls(blob, meta.key, meta.version, meta.size, meta.md5, meta.inline, meta.created_ms)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "BlobListing":
        """Return a listing from its JSON object; raise RecordError if a field is wrong."""
        try:
            return cls(
                str(raw["blob"]),
                str(raw["key"]),
                str(raw["version"]),
                int(raw["size"]),
                str(raw["md5"]),
                bool(raw.get("inline", False)),
                int(raw["created_ms"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"not a blob listing: {raw!r}: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        """Return the listing as the JSON object a worker sends."""
        return {name: getattr(self, name) for name in self.__slots__}


def encode(record: Any) -> bytes:
    """Return the stored form of a record dataclass."""
    # A shallow dict (fields are plain values and tuples): dataclasses.asdict deep-copies,
    # which showed in profiles of the write path.
    fields = {name: getattr(record, name) for name in record.__slots__}
    if not fields.get("meta", True):
        del fields["meta"]  # the format of records without metadata stays as it was
    body = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return bytes((FORMAT,)) + body.encode("utf-8")


def decode(cls: type[T], raw: bytes) -> T:
    """Return the record of type ``cls`` stored as ``raw``; raise RecordError if it is not one."""
    if not raw or raw[0] != FORMAT:
        raise RecordError(f"unknown record format byte {raw[:1]!r}")
    try:
        fields = json.loads(raw[1:])
        if "replicas" in fields:
            fields["replicas"] = tuple(fields["replicas"])
        if "meta" in fields:
            fields["meta"] = tuple((str(name), str(value)) for name, value in fields["meta"])
        return cls(**fields)
    except (ValueError, TypeError) as exc:
        raise RecordError(f"bad {cls.__name__} record: {exc}") from None


#: Blob file header: magic, format, flags, key length, size, MD5 digest, version (ASCII).
_HEADER = struct.Struct(">4sBBHQ16s24s")
#: Format 2 adds the block size of the checksum table, before the key.
_BLOCKS = struct.Struct(">I")
BLOB_MAGIC = b"KFSB"
#: The blob file format written by this version; format 1 (no block checksums) is still read.
BLOB_FORMAT = 2
#: Each block of a format-2 value has its xxh3-64 digest (big-endian) in the table that
#: follows the value.
BLOCK_DIGEST = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class BlobHeader:
    """The self-describing header at the start of every blob file; data follows it.

    ``block_size`` is 0 for a format-1 file (its value is checked by its MD5 alone), else
    the size of the blocks whose digests follow the value (format 2): any block can be
    checked on its own, so a range is served checked without reading the whole value.
    """

    key: str
    version: str
    size: int
    md5: str
    block_size: int = 0

    def pack(self) -> bytes:
        """Return the header bytes; their length is ``self.data_offset``."""
        key = self.key.encode("utf-8")
        fixed = _HEADER.pack(
            BLOB_MAGIC,
            2 if self.block_size else 1,
            0,
            len(key),
            self.size,
            bytes.fromhex(self.md5),
            self.version.encode("ascii"),
        )
        blocks = _BLOCKS.pack(self.block_size) if self.block_size else b""
        return fixed + blocks + key

    @staticmethod
    def length(key: str, block_size: int = 0) -> int:
        """Return the header length of a blob file holding ``key`` (in format 2 when it has a
        ``block_size``): where its data starts."""
        extra = _BLOCKS.size if block_size else 0
        return _HEADER.size + extra + len(key.encode("utf-8"))

    @property
    def data_offset(self) -> int:
        """Where the value starts in the file."""
        return self.length(self.key, self.block_size)

    @property
    def blocks(self) -> int:
        """How many blocks (and digests in the table) the value has."""
        return -(-self.size // self.block_size) if self.block_size else 0

    @property
    def file_size(self) -> int:
        """The length of the whole file: header, value and (format 2) digest table."""
        return self.data_offset + self.size + self.blocks * BLOCK_DIGEST.size

    @classmethod
    def unpack(cls, raw: bytes) -> "BlobHeader":
        """Return the header at the start of ``raw``; raise RecordError if it is not one."""
        if len(raw) < _HEADER.size:
            raise RecordError("blob file is shorter than its header")
        magic, fmt, _flags, key_len, size, digest, version = _HEADER.unpack_from(raw)
        if magic != BLOB_MAGIC or fmt not in (1, 2):
            raise RecordError(f"not a kittenFS blob file (magic {magic!r}, format {fmt})")
        start, block_size = _HEADER.size, 0
        if fmt == 2:
            if len(raw) < start + _BLOCKS.size:
                raise RecordError("blob file header is truncated")
            (block_size,) = _BLOCKS.unpack_from(raw, start)
            start += _BLOCKS.size
            if block_size == 0:
                raise RecordError("format-2 blob file with a block size of 0")
        key = raw[start : start + key_len]
        if len(key) != key_len:
            raise RecordError("blob file header is truncated")
        try:
            return cls(key.decode("utf-8"), version.decode("ascii"), size, digest.hex(), block_size)
        except UnicodeDecodeError as exc:
            raise RecordError(f"blob file header is garbled: {exc}") from None


def block_digest(block: bytes | bytearray | memoryview) -> bytes:
    """Return the table entry of one block: its xxh3-64 digest, big-endian."""
    return BLOCK_DIGEST.pack(xxhash.xxh3_64_intdigest(block))


#: Bytes to read to be sure of holding any blob file's whole header.
MAX_HEADER_LENGTH = _HEADER.size + _BLOCKS.size + 1024
