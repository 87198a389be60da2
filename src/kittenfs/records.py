"""Records: the byte formats kittenFS writes to LevelDB and to blob files.

Every record kept in LevelDB starts with a format byte (``FORMAT``) followed by compact JSON,
so a future format can be told apart and migrated (inline values and the master's id are raw
bytes).  Blob files start with a fixed binary header (``BlobHeader``) that repeats the key,
version, size and MD5 (and, in format 3, ends with the value's metadata), and inline values
sit beside a BlobMeta that holds the same, so what a worker holds names its keys and the
master's index can be rebuilt from the workers, metadata and all.  docs/format.md describes
both; golden tests pin them.
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

#: What a client said of a value beside its bytes: (lower-case header name, value) pairs, in
#: the order given (the S3 API's Content-Type, ``x-amz-meta-*``, checksums...).
Meta = tuple[tuple[str, str], ...]

#: Most bytes of a value's metadata in its stored form (``meta_block``).  S3 allows 2 KiB of
#: user metadata; the content headers, checksums and the S3 layer's own entries fit beside it.
MAX_META_BYTES = 16 * 1024


class RecordError(ValueError):
    """Stored bytes do not decode as a record of this format."""


class MetaTooLarge(RecordError):
    """A value's metadata is over MAX_META_BYTES in its stored form."""


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
    meta: Meta = ()

    def meta_value(self, name: str) -> str | None:
        """Return the value of the ``meta`` entry called ``name``, or None."""
        return next((value for key, value in self.meta if key == name), None)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """The master's durable knowledge of one registered worker."""

    id: str
    index: int
    url: str
    registered_ms: int


@dataclass(frozen=True, slots=True)
class BlobMeta:
    """A worker's record of one blob it holds; ``inline`` blobs keep their bytes in LevelDB.

    ``meta`` is the value's metadata (IndexRecord.meta), kept so that ``kittenfs rebuild``
    can restore it; like IndexRecord, a BlobMeta without any stores no ``meta`` field.
    """

    key: str
    version: str
    size: int
    md5: str
    inline: bool
    created_ms: int
    meta: Meta = ()


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
    meta: Meta = ()  # the value's metadata; listed only when there is some

    @classmethod
    def of(cls, blob: str, meta: BlobMeta) -> "BlobListing":
        """Return the listing of the blob ``blob`` with metadata ``meta``."""
        return cls(
            blob,
            meta.key,
            meta.version,
            meta.size,
            meta.md5,
            meta.inline,
            meta.created_ms,
            meta.meta,
        )

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
                meta_from_json(raw.get("meta", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"not a blob listing: {raw!r}: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        """Return the listing as the JSON object a worker sends."""
        return _fields(self)


def _fields(record: Any) -> dict[str, Any]:
    """Return a record dataclass's fields, without ``meta`` when it is empty: the form of
    records without metadata stays as it was before there was any."""
    # A shallow dict (fields are plain values and tuples): dataclasses.asdict deep-copies,
    # which showed in profiles of the write path.
    fields = {name: getattr(record, name) for name in record.__slots__}
    if not fields.get("meta", True):
        del fields["meta"]
    return fields


def encode(record: Any) -> bytes:
    """Return the stored form of a record dataclass."""
    body = json.dumps(_fields(record), separators=(",", ":"), ensure_ascii=False)
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
            fields["meta"] = meta_from_json(fields["meta"])
        return cls(**fields)
    except (ValueError, TypeError) as exc:
        raise RecordError(f"bad {cls.__name__} record: {exc}") from None


def meta_from_json(raw: object) -> Meta:
    """Return the metadata a JSON list of ``[name, value]`` string pairs holds; raise
    RecordError if it is anything else."""
    if not isinstance(raw, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)
        for pair in raw
    ):
        raise RecordError("metadata must be a list of [name, value] string pairs")
    return tuple((name, value) for name, value in raw)


def meta_block(meta: Meta) -> bytes:
    """Return the stored form of a value's metadata: nothing for none, else compact JSON
    ``[[name, value], ...]`` in UTF-8.  Raise MetaTooLarge if it is over MAX_META_BYTES."""
    if not meta:
        return b""
    block = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(block) > MAX_META_BYTES:
        raise MetaTooLarge(
            f"the value's metadata takes {len(block)} bytes, over the limit of {MAX_META_BYTES}"
        )
    return block


def parse_meta_block(block: bytes) -> Meta:
    """Return the metadata ``meta_block`` stored as ``block``; raise RecordError if it is not
    one (too long, not UTF-8 JSON of string pairs)."""
    if len(block) > MAX_META_BYTES:
        raise MetaTooLarge(f"a metadata block of {len(block)} bytes, over {MAX_META_BYTES}")
    if not block:
        return ()
    try:
        raw = json.loads(block.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"a metadata block that is not UTF-8 JSON: {exc}") from None
    return meta_from_json(raw)


def meta_digest(block: bytes) -> int:
    """Return the xxh3-64 digest of a metadata block, as a format-3 blob header holds it."""
    return xxhash.xxh3_64_intdigest(block)


#: What ends a metadata frame (``meta_frame``): the block's length and a magic.
_FRAME_END = struct.Struct(">I4s")
META_FRAME_MAGIC = b"KFSM"
#: Most bytes a metadata frame takes at the end of an upload's body.
MAX_META_FRAME = MAX_META_BYTES + _FRAME_END.size


def meta_frame(meta: Meta) -> bytes:
    """Return the frame that ends an upload body sent with ``X-Kfs-Meta: trailer``: the
    metadata block, its length (big-endian uint32) and ``KFSM``.  It follows the value
    because the metadata may be known only once the value has streamed through (an S3
    checksum)."""
    block = meta_block(meta)
    return block + _FRAME_END.pack(len(block), META_FRAME_MAGIC)


def split_meta_frame(tail: bytes) -> tuple[bytes, Meta]:
    """Return (the value's bytes before the frame, the metadata) of the end of an upload body,
    ``tail``: at least the whole frame.  Raise RecordError if it does not end in a frame."""
    if len(tail) < _FRAME_END.size:
        raise RecordError("the body ends before its metadata frame")
    length, magic = _FRAME_END.unpack_from(tail, len(tail) - _FRAME_END.size)
    if magic != META_FRAME_MAGIC:
        raise RecordError("the body does not end in a metadata frame")
    if length > MAX_META_BYTES:
        raise MetaTooLarge(f"a metadata frame of {length} bytes, over {MAX_META_BYTES}")
    if length + _FRAME_END.size > len(tail):
        raise RecordError("the body is shorter than its metadata frame")
    end = len(tail) - _FRAME_END.size
    return tail[: end - length], parse_meta_block(tail[end - length : end])


#: Blob file header: magic, format, flags, key length, size, MD5 digest, version (ASCII).
_HEADER = struct.Struct(">4sBBHQ16s24s")
#: Format 2 adds the block size of the checksum table, before the key.
_BLOCKS = struct.Struct(">I")
#: Format 3 adds, after the block size, the length and xxh3-64 digest of the metadata block
#: that ends the file.
_META = struct.Struct(">IQ")
BLOB_MAGIC = b"KFSB"
#: The blob file format written by this version for a value without metadata; formats 1 (no
#: block checksums) and 3 (format 2 and the value's metadata) are read too.
BLOB_FORMAT = 2
#: The blob file format written for a value sent with its metadata.
BLOB_FORMAT_META = 3
#: Each block of a format-2 (or 3) value has its xxh3-64 digest (big-endian) in the table
#: that follows the value.
BLOCK_DIGEST = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class BlobHeader:
    """The self-describing header at the start of every blob file; data follows it.

    ``block_size`` is 0 for a format-1 file (its value is checked by its MD5 alone), else
    the size of the blocks whose digests follow the value (format 2): any block can be
    checked on its own, so a range is served checked without reading the whole value.
    ``meta_length`` is -1 unless the file is of format 3, whose value's metadata (its
    ``meta_block``, ``meta_length`` bytes, possibly none) ends the file after the digest
    table; ``meta_digest`` is that block's xxh3-64, so a damaged block is told from a good
    one.  The block comes last because a worker learns the metadata only once the value has
    arrived (docs/format.md).
    """

    key: str
    version: str
    size: int
    md5: str
    block_size: int = 0
    meta_length: int = -1
    meta_digest: int = 0

    @classmethod
    def with_meta(
        cls, key: str, version: str, size: int, md5: str, block_size: int, block: bytes
    ) -> "BlobHeader":
        """Return the header of a format-3 file whose metadata block is ``block``."""
        return cls(key, version, size, md5, block_size, len(block), meta_digest(block))

    @property
    def format(self) -> int:
        """The file's format: 1, 2 or 3."""
        if not self.block_size:
            return 1
        return BLOB_FORMAT_META if self.meta_length >= 0 else 2

    def pack(self) -> bytes:
        """Return the header bytes; their length is ``self.data_offset``."""
        if self.meta_length >= 0 and not self.block_size:
            raise ValueError("a blob header with metadata needs a block size (format 3)")
        key = self.key.encode("utf-8")
        fixed = _HEADER.pack(
            BLOB_MAGIC,
            self.format,
            0,
            len(key),
            self.size,
            bytes.fromhex(self.md5),
            self.version.encode("ascii"),
        )
        blocks = _BLOCKS.pack(self.block_size) if self.block_size else b""
        meta = _META.pack(self.meta_length, self.meta_digest) if self.meta_length >= 0 else b""
        return fixed + blocks + meta + key

    @staticmethod
    def length(key: str, block_size: int = 0, meta: bool = False) -> int:
        """Return the header length of a blob file holding ``key`` (in format 2 when it has a
        ``block_size``, 3 when it also has ``meta``): where its data starts."""
        extra = (_BLOCKS.size if block_size else 0) + (_META.size if meta else 0)
        return _HEADER.size + extra + len(key.encode("utf-8"))

    @property
    def data_offset(self) -> int:
        """Where the value starts in the file."""
        return self.length(self.key, self.block_size, self.meta_length >= 0)

    @property
    def blocks(self) -> int:
        """How many blocks (and digests in the table) the value has."""
        return -(-self.size // self.block_size) if self.block_size else 0

    @property
    def meta_offset(self) -> int:
        """Where the metadata block starts (format 3): after the value and digest table."""
        return self.data_offset + self.size + self.blocks * BLOCK_DIGEST.size

    @property
    def file_size(self) -> int:
        """The length of the whole file: header, value, (formats 2 and 3) digest table and
        (format 3) metadata block."""
        return self.meta_offset + max(self.meta_length, 0)

    def check_meta_block(self, block: bytes) -> Meta:
        """Return the metadata of this (format-3) file's metadata block ``block``; raise
        RecordError if it is not the block the header describes, or does not parse."""
        if len(block) != max(self.meta_length, 0) or (
            self.meta_length >= 0 and meta_digest(block) != self.meta_digest
        ):
            raise RecordError(f"{self.key!r}: the metadata block fails its checksum")
        return parse_meta_block(block)

    def describes_meta(self, meta: Meta) -> bool:
        """Return True if this header's metadata section describes ``meta`` (formats 1 and
        2 describe none)."""
        try:
            block = meta_block(meta)
        except MetaTooLarge:
            return False
        if self.meta_length < 0:
            return not block
        return len(block) == self.meta_length and meta_digest(block) == self.meta_digest

    @classmethod
    def unpack(cls, raw: bytes) -> "BlobHeader":
        """Return the header at the start of ``raw``; raise RecordError if it is not one."""
        if len(raw) < _HEADER.size:
            raise RecordError("blob file is shorter than its header")
        magic, fmt, _flags, key_len, size, digest, version = _HEADER.unpack_from(raw)
        if magic != BLOB_MAGIC or fmt not in (1, 2, BLOB_FORMAT_META):
            raise RecordError(f"not a kittenFS blob file (magic {magic!r}, format {fmt})")
        start, block_size, meta_length, meta_sum = _HEADER.size, 0, -1, 0
        if fmt >= 2:
            if len(raw) < start + _BLOCKS.size:
                raise RecordError("blob file header is truncated")
            (block_size,) = _BLOCKS.unpack_from(raw, start)
            start += _BLOCKS.size
            if block_size == 0:
                raise RecordError(f"format-{fmt} blob file with a block size of 0")
        if fmt == BLOB_FORMAT_META:
            if len(raw) < start + _META.size:
                raise RecordError("blob file header is truncated")
            meta_length, meta_sum = _META.unpack_from(raw, start)
            start += _META.size
            if meta_length > MAX_META_BYTES:
                raise RecordError(f"a metadata block of {meta_length} bytes, over the limit")
        key = raw[start : start + key_len]
        if len(key) != key_len:
            raise RecordError("blob file header is truncated")
        try:
            return cls(
                key.decode("utf-8"),
                version.decode("ascii"),
                size,
                digest.hex(),
                block_size,
                meta_length,
                meta_sum,
            )
        except UnicodeDecodeError as exc:
            raise RecordError(f"blob file header is garbled: {exc}") from None


def block_digest(block: bytes | bytearray | memoryview) -> bytes:
    """Return the table entry of one block: its xxh3-64 digest, big-endian."""
    return BLOCK_DIGEST.pack(xxhash.xxh3_64_intdigest(block))


#: Bytes to read to be sure of holding any blob file's whole header.
MAX_HEADER_LENGTH = _HEADER.size + _BLOCKS.size + _META.size + 1024
