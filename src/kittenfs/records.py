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
from typing import Any, TypeVar

#: Format byte that starts every LevelDB value written by this version.
FORMAT = 1

T = TypeVar("T")


class RecordError(ValueError):
    """Stored bytes do not decode as a record of this format."""


@dataclass(frozen=True, slots=True)
class IndexRecord:
    """The master's record of one version of a key: where its replicas are and what they hold.

    ``replicas`` are worker indices.  For a pending write, ``size`` is -1 and ``md5`` is "".
    """

    key: str
    version: str
    size: int
    md5: str
    replicas: tuple[int, ...]
    created_ms: int
    modified_ms: int


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


def encode(record: Any) -> bytes:
    """Return the stored form of a record dataclass."""
    # A shallow dict (fields are plain values and tuples): dataclasses.asdict deep-copies,
    # which showed in profiles of the write path.
    fields = {name: getattr(record, name) for name in record.__slots__}
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
        return cls(**fields)
    except (ValueError, TypeError) as exc:
        raise RecordError(f"bad {cls.__name__} record: {exc}") from None


#: Blob file header: magic, format, flags, key length, size, MD5 digest, version (ASCII).
_HEADER = struct.Struct(">4sBBHQ16s24s")
BLOB_MAGIC = b"KFSB"
BLOB_FORMAT = 1


@dataclass(frozen=True, slots=True)
class BlobHeader:
    """The self-describing header at the start of every blob file; data follows it."""

    key: str
    version: str
    size: int
    md5: str

    def pack(self) -> bytes:
        """Return the header bytes; their length is ``header_length(key)``."""
        key = self.key.encode("utf-8")
        fixed = _HEADER.pack(
            BLOB_MAGIC, BLOB_FORMAT, 0, len(key), self.size,
            bytes.fromhex(self.md5), self.version.encode("ascii"),
        )
        return fixed + key

    @staticmethod
    def length(key: str) -> int:
        """Return the header length of a blob file holding ``key``: where its data starts."""
        return _HEADER.size + len(key.encode("utf-8"))

    @classmethod
    def unpack(cls, raw: bytes) -> "BlobHeader":
        """Return the header at the start of ``raw``; raise RecordError if it is not one."""
        if len(raw) < _HEADER.size:
            raise RecordError("blob file is shorter than its header")
        magic, fmt, _flags, key_len, size, digest, version = _HEADER.unpack_from(raw)
        if magic != BLOB_MAGIC or fmt != BLOB_FORMAT:
            raise RecordError(f"not a kittenFS blob file (magic {magic!r}, format {fmt})")
        key = raw[_HEADER.size : _HEADER.size + key_len]
        if len(key) != key_len:
            raise RecordError("blob file header is truncated")
        try:
            return cls(key.decode("utf-8"), version.decode("ascii"), size, digest.hex())
        except UnicodeDecodeError as exc:
            raise RecordError(f"blob file header is garbled: {exc}") from None


#: Bytes to read to be sure of holding any blob file's whole header.
MAX_HEADER_LENGTH = _HEADER.size + 1024
