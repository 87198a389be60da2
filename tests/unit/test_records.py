"""Records: LevelDB value encoding and the blob file header.

GOLDEN: the byte literals below were produced once by the current code.  They are the on-disk
format (docs/format.md): a change here makes every existing index and blob file unreadable,
which orphans every stored blob.  Change the format only with a new format byte and a migration.
"""

import dataclasses
import json

import pytest

from kittenfs.records import (
    BLOB_FORMAT,
    BLOB_FORMAT_META,
    BLOB_MAGIC,
    FORMAT,
    MAX_HEADER_LENGTH,
    MAX_META_BYTES,
    BlobHeader,
    BlobListing,
    BlobMeta,
    CopyState,
    IndexRecord,
    MetaTooLarge,
    RecordError,
    WorkerInfo,
    block_digest,
    decode,
    encode,
    meta_block,
    meta_digest,
    meta_frame,
    parse_meta_block,
    split_meta_frame,
)

VERSION = "17979cfe3d85cd1501020304"
MD5_HELLO = "5d41402abc4b2a76b9719d911017c592"  # md5(b"hello")

INDEX = IndexRecord("/cats/tom.jpg", VERSION, 5, MD5_HELLO, (0, 2, 1), 1700000000123, 1700000000456)
PENDING = IndexRecord("/ñ/猫 🐱", VERSION, -1, "", (), 1, 1)
WORKER = WorkerInfo("w-deadbeef0001", 2, "http://127.0.0.1:7002", 1700000000000)
META_INLINE = BlobMeta("/ñ", VERSION, 5, MD5_HELLO, True, 1700000000123)
META_FILE = BlobMeta("/big", VERSION, 10**12, MD5_HELLO, False, 0)


# --- LevelDB records ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [INDEX, PENDING, WORKER, META_INLINE, META_FILE],
    ids=["index", "pending", "worker", "meta-inline", "meta-file"],
)
def test_round_trip(record: object) -> None:
    raw = encode(record)
    assert raw[0] == FORMAT == 1
    back = decode(type(record), raw)
    assert back == record
    assert type(back) is type(record)


def test_index_record_replicas_decode_as_tuple() -> None:
    back = decode(IndexRecord, encode(INDEX))
    assert isinstance(back.replicas, tuple)
    assert back.replicas == (0, 2, 1)  # order is preference order: kept
    hash(back)  # frozen dataclass with a tuple stays hashable


def test_blob_meta_inline_is_a_bool() -> None:
    assert decode(BlobMeta, encode(META_INLINE)).inline is True
    assert decode(BlobMeta, encode(META_FILE)).inline is False


def test_index_record_golden_bytes() -> None:
    # GOLDEN: a change here makes every master index unreadable.
    assert encode(INDEX) == (
        b'\x01{"key":"/cats/tom.jpg","version":"17979cfe3d85cd1501020304","size":5,'
        b'"md5":"5d41402abc4b2a76b9719d911017c592","replicas":[0,2,1],'
        b'"created_ms":1700000000123,"modified_ms":1700000000456}'
    )


def test_worker_info_and_blob_meta_golden_bytes() -> None:
    # GOLDEN: a change here makes every master and worker index unreadable.
    assert encode(WORKER) == (
        b'\x01{"id":"w-deadbeef0001","index":2,"url":"http://127.0.0.1:7002",'
        b'"registered_ms":1700000000000}'
    )
    # Non-ASCII is stored as raw UTF-8, not \u escapes.
    assert encode(META_INLINE) == (
        b'\x01{"key":"/\xc3\xb1","version":"17979cfe3d85cd1501020304","size":5,'
        b'"md5":"5d41402abc4b2a76b9719d911017c592","inline":true,"created_ms":1700000000123}'
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" + encode(INDEX)[1:],  # wrong format byte
        b"\x02" + encode(INDEX)[1:],  # a future format
        b"{" + encode(INDEX)[1:],  # no format byte at all (bare JSON)
    ],
)
def test_decode_rejects_unknown_format(raw: bytes) -> None:
    with pytest.raises(RecordError):
        decode(IndexRecord, raw)


@pytest.mark.parametrize(
    "body",
    [
        b"",  # format byte only
        b"{",  # truncated JSON
        b"not json",
        b'{"key":"/k"',  # truncated record
        b"\xff\xfe",  # not UTF-8
        b"null",
        b"5",
        b'"a string"',
        b"[1, 2, 3]",
        b'["replicas"]',
    ],
    ids=[
        "empty",
        "brace",
        "text",
        "truncated",
        "not-utf8",
        "null",
        "number",
        "string",
        "list",
        "list-replicas",
    ],
)
def test_decode_rejects_bad_json(body: bytes) -> None:
    with pytest.raises(RecordError):
        decode(IndexRecord, bytes((FORMAT,)) + body)


def test_decode_rejects_missing_and_extra_fields() -> None:
    fields = dataclasses.asdict(WORKER)
    missing = dict(fields)
    del missing["url"]
    extra = dict(fields, colour="tabby")
    for bad in (missing, extra):
        raw = encode(WORKER)[:1] + json.dumps(bad).encode()
        with pytest.raises(RecordError):
            decode(WorkerInfo, raw)


def test_decode_rejects_a_record_of_another_type() -> None:
    with pytest.raises(RecordError):
        decode(WorkerInfo, encode(INDEX))
    with pytest.raises(RecordError):
        decode(IndexRecord, encode(META_INLINE))
    with pytest.raises(RecordError):
        decode(BlobMeta, encode(WORKER))


def test_decode_rejects_non_list_replicas() -> None:
    raw = encode(INDEX).replace(b'"replicas":[0,2,1]', b'"replicas":5')
    with pytest.raises(RecordError):
        decode(IndexRecord, raw)


def test_record_error_is_a_value_error() -> None:
    assert issubclass(RecordError, ValueError)


# --- blob file header ---------------------------------------------------------------------

HEADER = BlobHeader("/cats/tom.jpg", VERSION, 5, MD5_HELLO)
FIXED = 56  # magic 4, format 1, flags 1, key length 2, size 8, md5 16, version 24


def test_blob_header_golden_bytes() -> None:
    # GOLDEN: a change here makes every blob file on every worker unreadable.
    assert HEADER.pack() == (
        b"KFSB"  # magic
        b"\x01"  # format
        b"\x00"  # flags
        b"\x00\x0d"  # key length 13, big-endian
        b"\x00\x00\x00\x00\x00\x00\x00\x05"  # size 5, big-endian
        b"]A@*\xbcK*v\xb9q\x9d\x91\x10\x17\xc5\x92"  # md5 digest, raw
        b"17979cfe3d85cd1501020304"  # version, ASCII
        b"/cats/tom.jpg"  # key, UTF-8
    )
    assert BLOB_MAGIC == b"KFSB"


def test_blob_header_format_2_golden_bytes() -> None:
    # GOLDEN: format 2 (written since block digests) adds the block size before the key.
    header = BlobHeader("/cats/tom.jpg", VERSION, 5, MD5_HELLO, 262144)
    assert header.pack() == (
        b"KFSB"  # magic
        b"\x02"  # format
        b"\x00"  # flags
        b"\x00\x0d"  # key length 13, big-endian
        b"\x00\x00\x00\x00\x00\x00\x00\x05"  # size 5, big-endian
        b"]A@*\xbcK*v\xb9q\x9d\x91\x10\x17\xc5\x92"  # md5 digest, raw
        b"17979cfe3d85cd1501020304"  # version, ASCII
        b"\x00\x04\x00\x00"  # block size 262144, big-endian
        b"/cats/tom.jpg"  # key, UTF-8
    )
    assert BLOB_FORMAT == 2
    assert (header.data_offset, header.blocks, header.file_size) == (73, 1, 73 + 5 + 8)
    assert BlobHeader.unpack(header.pack()) == header


def test_block_digest_golden() -> None:
    # GOLDEN: the xxh3-64 of each block, big-endian, as stored in the table after the value.
    assert block_digest(b"") == bytes.fromhex("2d06800538d394c2")
    assert block_digest(b"hello") == bytes.fromhex("9555e8555c62dcfd")


@pytest.mark.parametrize(("size", "blocks"), [(0, 0), (1, 1), (4, 1), (5, 2), (8, 2), (9, 3)])
def test_a_value_has_one_digest_per_started_block(size: int, blocks: int) -> None:
    header = BlobHeader("/k", VERSION, size, MD5_HELLO, 4)
    assert header.blocks == blocks
    assert header.file_size == header.data_offset + size + 8 * blocks


@pytest.mark.parametrize(
    "header",
    [
        HEADER,
        BlobHeader("/kätzchen/猫/🐱", VERSION, 0, "d41d8cd98f00b204e9800998ecf8427e"),
        BlobHeader("/" + "é" * 511, VERSION, 2**64 - 1, "ff" * 16),  # 1023-byte key, max size
        BlobHeader("/", "0" * 24, 1, "00" * 16),
    ],
)
def test_blob_header_round_trip(header: BlobHeader) -> None:
    packed = header.pack()
    assert len(packed) == BlobHeader.length(header.key)
    assert BlobHeader.unpack(packed) == header
    # Data after the header is ignored by unpack.
    assert BlobHeader.unpack(packed + b"value bytes follow") == header


def test_blob_header_length() -> None:
    assert BlobHeader.length("/cats/tom.jpg") == FIXED + 13
    assert BlobHeader.length("/kätzchen") == FIXED + len("/kätzchen".encode()) == FIXED + 10
    assert BlobHeader.length("/🐱") == FIXED + 5
    assert BlobHeader.length("/cats/tom.jpg", 4096) == FIXED + 4 + 13
    assert BlobHeader.length("/cats/tom.jpg", 4096, meta=True) == FIXED + 4 + 12 + 13
    assert MAX_HEADER_LENGTH == FIXED + 4 + 12 + 1024


def test_blob_header_non_ascii_key_length_is_in_bytes() -> None:
    header = BlobHeader("/kätzchen", VERSION, 5, MD5_HELLO)
    packed = header.pack()
    assert packed[6:8] == (10).to_bytes(2, "big")
    assert packed[FIXED:] == "/kätzchen".encode()


@pytest.mark.parametrize("magic", [b"KFSA", b"kfsb", b"\x00\x00\x00\x00", b"PK\x03\x04"])
def test_blob_header_bad_magic(magic: bytes) -> None:
    with pytest.raises(RecordError):
        BlobHeader.unpack(magic + HEADER.pack()[4:])


@pytest.mark.parametrize("fmt", [0, 4, 255])
def test_blob_header_bad_format(fmt: int) -> None:
    packed = bytearray(HEADER.pack())
    packed[4] = fmt
    with pytest.raises(RecordError):
        BlobHeader.unpack(bytes(packed))


def test_a_format_2_header_with_no_block_size_is_refused() -> None:
    packed = bytearray(BlobHeader("/k", VERSION, 5, MD5_HELLO, 4096).pack())
    packed[FIXED : FIXED + 4] = bytes(4)
    with pytest.raises(RecordError):
        BlobHeader.unpack(bytes(packed))


@pytest.mark.parametrize("cut", [0, 1, 4, FIXED - 1, FIXED, FIXED + 12])
def test_blob_header_truncated(cut: int) -> None:
    packed = HEADER.pack()
    assert len(packed) == FIXED + 13
    with pytest.raises(RecordError):
        BlobHeader.unpack(packed[:cut])


def test_blob_header_key_length_beyond_data() -> None:
    packed = bytearray(HEADER.pack())
    packed[6:8] = (14).to_bytes(2, "big")  # claims one more key byte than is there
    with pytest.raises(RecordError):
        BlobHeader.unpack(bytes(packed))


@pytest.mark.parametrize("where", ["key", "version"])
def test_blob_header_corrupt_text_raises_record_error(where: str) -> None:
    packed = bytearray(HEADER.pack())
    packed[FIXED + 1 if where == "key" else FIXED - 24] = 0xFF
    with pytest.raises(RecordError):
        BlobHeader.unpack(bytes(packed))


def test_blob_listing_round_trips_through_json() -> None:
    """The shape of ``GET /blobs`` (docs/api.md), pinned: the clone and gc read it."""
    meta = BlobMeta("/k", "17979cfe3d85cd1501020304", 3, "a" * 32, True, 1700000000000)
    listing = BlobListing.of("b" * 32 + "-17979cfe3d85cd1501020304", meta)
    raw = listing.to_json()
    assert sorted(raw) == ["blob", "created_ms", "inline", "key", "md5", "size", "version"]
    assert BlobListing.from_json(json.loads(json.dumps(raw))) == listing


def test_a_malformed_blob_listing_is_a_record_error() -> None:
    with pytest.raises(RecordError):
        BlobListing.from_json({"blob": "x", "key": "/k"})


def test_copy_states_are_the_strings_jobs_report() -> None:
    assert [state.value for state in CopyState] == ["good", "missing", "corrupt"]


# --- a value's metadata: the block, the frame, format 3 -----------------------------------

META = (("content-type", "text/plain"), ("x-amz-meta-colour", "ginger"))
META_BLOCK = b'[["content-type","text/plain"],["x-amz-meta-colour","ginger"]]'


def test_meta_block_golden_bytes() -> None:
    # GOLDEN: the metadata block of format-3 blob files (and of upload frames).
    assert meta_block(META) == META_BLOCK
    assert meta_digest(META_BLOCK) == 0x322C9F34F0A565F7
    assert meta_block(()) == b""  # no metadata: no block
    assert meta_block((("x-amz-meta-名", "🐱"),)) == '[["x-amz-meta-名","🐱"]]'.encode()


@pytest.mark.parametrize(
    "meta",
    [META, (), (("a", ""),), (("x-amz-meta-k", "v" * 1000),) * 10, (("n", '"[],\\\n'),)],
    ids=["s3", "none", "empty-value", "large", "escapes"],
)
def test_meta_block_round_trip(meta: tuple[tuple[str, str], ...]) -> None:
    assert parse_meta_block(meta_block(meta)) == meta


def test_metadata_over_the_limit_is_refused() -> None:
    at_limit = (("x-amz-meta-k", "v" * (MAX_META_BYTES - len('[["x-amz-meta-k",""]]'))),)
    assert len(meta_block(at_limit)) == MAX_META_BYTES == 16 * 1024
    over = (("x-amz-meta-k", at_limit[0][1] + "v"),)
    with pytest.raises(MetaTooLarge, match="over the limit of 16384"):
        meta_block(over)
    with pytest.raises(MetaTooLarge):
        parse_meta_block(b" " * (MAX_META_BYTES + 1))
    with pytest.raises(MetaTooLarge):
        meta_frame(over)
    assert issubclass(MetaTooLarge, RecordError)


@pytest.mark.parametrize(
    "block",
    [
        b"{",
        b"\xff",
        b"null",
        b'{"a": "b"}',
        b'[["a"]]',
        b'[["a", 1]]',
        b'[["a","b","c"]]',
        b'["ab"]',
    ],
)
def test_a_malformed_meta_block_is_a_record_error(block: bytes) -> None:
    with pytest.raises(RecordError):
        parse_meta_block(block)


def test_blob_header_format_3_golden_bytes() -> None:
    # GOLDEN: format 3 (a value with metadata) adds the metadata block's length and xxh3-64
    # after the block size; the block itself ends the file, after the digest table.
    header = BlobHeader.with_meta("/cats/tom.jpg", VERSION, 5, MD5_HELLO, 262144, META_BLOCK)
    assert header.pack() == (
        b"KFSB"  # magic
        b"\x03"  # format
        b"\x00"  # flags
        b"\x00\x0d"  # key length 13, big-endian
        b"\x00\x00\x00\x00\x00\x00\x00\x05"  # size 5, big-endian
        b"]A@*\xbcK*v\xb9q\x9d\x91\x10\x17\xc5\x92"  # md5 digest, raw
        b"17979cfe3d85cd1501020304"  # version, ASCII
        b"\x00\x04\x00\x00"  # block size 262144, big-endian
        b"\x00\x00\x00\x3e"  # metadata block length 62, big-endian
        b"\x32\x2c\x9f\x34\xf0\xa5\x65\xf7"  # its xxh3-64, big-endian
        b"/cats/tom.jpg"  # key, UTF-8
    )
    assert BLOB_FORMAT_META == header.format == 3
    assert header.data_offset == FIXED + 4 + 12 + 13 == 85
    assert header.meta_offset == 85 + 5 + 8  # after the value and its one block digest
    assert header.file_size == header.meta_offset + 62
    assert BlobHeader.unpack(header.pack()) == header
    assert header.check_meta_block(META_BLOCK) == META
    assert header.describes_meta(META) and not header.describes_meta(())


def test_formats_1_and_2_describe_no_metadata() -> None:
    for header in (HEADER, BlobHeader("/k", VERSION, 5, MD5_HELLO, 4096)):
        assert header.meta_length == -1 and header.format in (1, 2)
        assert header.describes_meta(()) and not header.describes_meta(META)
        assert header.check_meta_block(b"") == ()
        assert header.file_size == header.meta_offset


def test_a_format_3_file_may_have_an_empty_metadata_block() -> None:
    """An upload that said metadata might follow, and then had none."""
    header = BlobHeader.with_meta("/k", VERSION, 5, MD5_HELLO, 4096, b"")
    assert header.format == 3 and header.meta_length == 0
    assert BlobHeader.unpack(header.pack()) == header
    assert header.file_size == header.meta_offset
    assert header.check_meta_block(b"") == ()
    assert header.describes_meta(()) and not header.describes_meta(META)


@pytest.mark.parametrize("where", range(len(META_BLOCK)))
def test_a_damaged_meta_block_fails_its_digest(where: int) -> None:
    header = BlobHeader.with_meta("/k", VERSION, 5, MD5_HELLO, 4096, META_BLOCK)
    damaged = bytearray(META_BLOCK)
    damaged[where] ^= 0x01
    with pytest.raises(RecordError, match="fails its checksum"):
        header.check_meta_block(bytes(damaged))
    with pytest.raises(RecordError):
        header.check_meta_block(META_BLOCK[:-1])


def test_a_format_3_header_is_checked() -> None:
    packed = BlobHeader.with_meta("/k", VERSION, 5, MD5_HELLO, 4096, META_BLOCK).pack()
    for cut in (FIXED + 4, FIXED + 4 + 11, FIXED + 4 + 12 + 1):
        with pytest.raises(RecordError, match="truncated"):
            BlobHeader.unpack(packed[:cut])
    too_long = bytearray(packed)
    too_long[FIXED + 4 : FIXED + 8] = (MAX_META_BYTES + 1).to_bytes(4, "big")
    with pytest.raises(RecordError, match="over the limit"):
        BlobHeader.unpack(bytes(too_long))
    no_blocks = bytearray(packed)
    no_blocks[FIXED : FIXED + 4] = bytes(4)
    with pytest.raises(RecordError, match="block size of 0"):
        BlobHeader.unpack(bytes(no_blocks))
    with pytest.raises(ValueError, match="needs a block size"):
        BlobHeader("/k", VERSION, 5, MD5_HELLO, 0, 0, 0).pack()  # format 3 needs blocks


def test_meta_frame_golden_bytes_and_split() -> None:
    # The end of an upload body sent with X-Kfs-Meta: trailer (docs/api.md).
    assert meta_frame((("a", "b"),)) == b'[["a","b"]]' + b"\x00\x00\x00\x0bKFSM"
    assert meta_frame(()) == b"\x00\x00\x00\x00KFSM"
    assert split_meta_frame(b"value" + meta_frame(META)) == (b"value", META)
    assert split_meta_frame(meta_frame(())) == (b"", ())


@pytest.mark.parametrize(
    "tail",
    [b"", b"KFSM", b"value", b"value\x00\x00\x00\x00KFSX", b"\x00\x00\x00\x09KFSM"],
    ids=["empty", "short", "no-frame", "bad-magic", "block-beyond-body"],
)
def test_a_body_that_does_not_end_in_a_frame_is_refused(tail: bytes) -> None:
    with pytest.raises(RecordError):
        split_meta_frame(tail)


def test_an_oversized_frame_is_refused() -> None:
    tail = b"x" * 10 + (MAX_META_BYTES + 1).to_bytes(4, "big") + b"KFSM"
    with pytest.raises(MetaTooLarge):
        split_meta_frame(tail)


def test_blob_meta_with_metadata_golden_bytes() -> None:
    # GOLDEN: a worker's BlobMeta keeps the value's metadata last; without any (above) its
    # bytes are those of every BlobMeta written before.
    meta = dataclasses.replace(META_INLINE, meta=(("content-type", "text/plain"),))
    assert encode(meta) == (
        b'\x01{"key":"/\xc3\xb1","version":"17979cfe3d85cd1501020304","size":5,'
        b'"md5":"5d41402abc4b2a76b9719d911017c592","inline":true,"created_ms":1700000000123,'
        b'"meta":[["content-type","text/plain"]]}'
    )
    assert decode(BlobMeta, encode(meta)) == meta
    assert decode(BlobMeta, encode(META_INLINE)).meta == ()


def test_a_blob_listing_carries_metadata_only_when_there_is_some() -> None:
    meta = BlobMeta("/k", VERSION, 3, "a" * 32, False, 1700000000000, META)
    listing = BlobListing.of("b" * 32 + "-" + VERSION, meta)
    raw = json.loads(json.dumps(listing.to_json()))
    assert raw["meta"] == [list(pair) for pair in META]
    assert BlobListing.from_json(raw) == listing and listing.meta == META
    with pytest.raises(RecordError):
        BlobListing.from_json(dict(raw, meta=[["only a name"]]))
