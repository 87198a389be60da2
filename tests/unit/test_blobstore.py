"""BlobStore: a worker's blobs on a real LevelDB and a real directory (tmp_path)."""

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypedDict, TypeVar, Unpack

import pytest
from pagecache import drop_from_page_cache, filesystem

from kittenfs.placement import blob_id, blob_relpath, new_version
from kittenfs.records import (
    BLOCK_DIGEST,
    MAX_META_BYTES,
    BlobHeader,
    BlobMeta,
    MetaTooLarge,
    block_digest,
    meta_block,
)
from kittenfs.worker.blobstore import (
    BLOCK_SIZE,
    DEFAULT_INLINE_MAX,
    BlobExists,
    BlobStore,
    CheckedReader,
    CorruptBlob,
    NotCached,
    SizeMismatch,
    read_checked,
    read_meta,
)

T = TypeVar("T")

INLINE_MAX = 1000
FIXED_HEADER = 56  # a blob header's fixed part (records._HEADER)


async def chunked(data: bytes, size: int = 333) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


async def failing(data: bytes, fail_after: int, size: int = 333) -> AsyncIterator[bytes]:
    sent = 0
    for start in range(0, len(data), size):
        if sent >= fail_after:
            raise ConnectionResetError("client went away")
        chunk = data[start : start + size]
        sent += len(chunk)
        yield chunk


def new_blob(key: str) -> tuple[str, str]:
    version = new_version()
    return blob_id(key, version), version


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def value(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


class StoreOptions(TypedDict, total=False):
    """BlobStore's keyword arguments that run() may set."""

    inline_max: int
    verify_max: int
    capacity: int


def run(
    tmp_path: Path, body: Callable[[BlobStore], Awaitable[T]], **kwargs: Unpack[StoreOptions]
) -> T:
    """Open a store in tmp_path, run ``body`` with it, and close it."""

    async def main() -> T:
        store = BlobStore(tmp_path, **({"inline_max": INLINE_MAX} | kwargs))
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def read_all(store: BlobStore, blob: str, meta: BlobMeta) -> bytes:
    """Return a file blob's value as a read serves it: every block checked."""
    where = store.locate_file(blob, meta)
    return b"".join(read_checked(where, 0, where.size))


def assert_nothing_kept(store: BlobStore, blob: str) -> None:
    assert store.meta(blob) is None
    assert store.db.get(b"v:" + blob.encode()) is None
    assert files_under(store.tmp_dir) == []
    assert files_under(store.blobs_dir) == []
    assert store.key_count == 0 and store.bytes_used == 0
    assert list(store.iter_meta()) == []


# --- storing ------------------------------------------------------------------------------


def test_small_value_is_inline(tmp_path: Path) -> None:
    data = b"hello"
    blob, version = new_blob("/small")

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/small", version, chunked(data, 2), expected_size=5)
        assert meta.inline is True
        assert (meta.key, meta.version, meta.size) == ("/small", version, 5)
        assert meta.md5 == hashlib.md5(data).hexdigest() == "5d41402abc4b2a76b9719d911017c592"
        assert store.meta(blob) == meta
        assert store.read_inline(blob, meta) == data
        assert files_under(store.blobs_dir) == []
        assert files_under(store.tmp_dir) == []
        assert not store.path(blob).exists()

    run(tmp_path, body)


def test_empty_value_is_inline(tmp_path: Path) -> None:
    blob, version = new_blob("/empty")

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/empty", version, chunked(b""), expected_size=0)
        assert meta.inline and meta.size == 0
        assert meta.md5 == "d41d8cd98f00b204e9800998ecf8427e"
        assert store.read_inline(blob, meta) == b""
        assert store.key_count == 1 and store.bytes_used == 0

    run(tmp_path, body)


def test_inline_boundary(tmp_path: Path) -> None:
    at, at_version = new_blob("/at")
    over, over_version = new_blob("/over")

    async def body(store: BlobStore) -> None:
        # Chunks of 7 so the boundary falls in the middle of a chunk.
        meta_at = await store.put(at, "/at", at_version, chunked(value(INLINE_MAX), 7))
        meta_over = await store.put(over, "/over", over_version, chunked(value(INLINE_MAX + 1), 7))
        assert meta_at.inline and not store.path(at).exists()
        assert store.read_inline(at, meta_at) == value(INLINE_MAX)
        assert not meta_over.inline and store.path(over).is_file()
        assert read_all(store, over, meta_over) == value(INLINE_MAX + 1)

    run(tmp_path, body)


def test_default_inline_max(tmp_path: Path) -> None:
    assert DEFAULT_INLINE_MAX == 64 * 1024
    small, small_version = new_blob("/a")
    large, large_version = new_blob("/b")

    async def body(store: BlobStore) -> None:
        assert store.inline_max == DEFAULT_INLINE_MAX
        assert (
            await store.put(small, "/a", small_version, chunked(bytes(DEFAULT_INLINE_MAX), 8192))
        ).inline
        assert not (
            await store.put(
                large, "/b", large_version, chunked(bytes(DEFAULT_INLINE_MAX + 1), 8192)
            )
        ).inline

    async def main() -> None:
        store = BlobStore(tmp_path)
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_large_value_is_a_file(tmp_path: Path) -> None:
    key = "/kätzchen/big"
    data = value(5000)
    blob, version = new_blob(key)

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, key, version, chunked(data), expected_size=len(data))
        assert meta.inline is False
        assert (meta.key, meta.version, meta.size) == (key, version, len(data))
        assert meta.md5 == hashlib.md5(data).hexdigest()
        assert store.meta(blob) == meta
        # No inline copy in LevelDB.
        assert store.db.get(b"v:" + blob.encode()) is None

        path = tmp_path / "blobs" / blob[0:2] / blob[2:4] / blob
        assert path == store.path(blob) == store.blobs_dir / blob_relpath(blob)
        assert files_under(store.blobs_dir) == [path]
        assert files_under(store.tmp_dir) == []

        raw = path.read_bytes()
        header = BlobHeader(key, version, len(data), meta.md5, BLOCK_SIZE)
        assert BlobHeader.unpack(raw) == header
        offset = BlobHeader.length(key, BLOCK_SIZE)
        # format 2: header, value, then one digest per block (here one block)
        assert len(raw) == offset + len(data) + BLOCK_DIGEST.size
        assert raw[offset : offset + len(data)] == data
        assert raw[offset + len(data) :] == block_digest(data)

        where = store.locate_file(blob, meta)
        assert (where.path, where.offset, where.size) == (path, offset, len(data))
        assert b"".join(read_checked(where, 0, len(data))) == data
        assert b"".join(read_checked(where, 100, 50)) == data[100:150]

    run(tmp_path, body)


def test_one_big_chunk(tmp_path: Path) -> None:
    data = value(3000)
    blob, version = new_blob("/one")

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/one", version, chunked(data, len(data)))
        assert not meta.inline and meta.md5 == hashlib.md5(data).hexdigest()
        assert read_all(store, blob, meta) == data

    run(tmp_path, body)


def test_values_survive_reopen(tmp_path: Path) -> None:
    small, small_version = new_blob("/s")
    large, large_version = new_blob("/l")

    async def write(store: BlobStore) -> tuple[BlobMeta, BlobMeta]:
        return (
            await store.put(small, "/s", small_version, chunked(b"tiny")),
            await store.put(large, "/l", large_version, chunked(value(4000))),
        )

    async def read(store: BlobStore) -> None:
        assert store.meta(small) == meta_small
        assert store.meta(large) == meta_large
        assert store.read_inline(small, meta_small) == b"tiny"
        assert read_all(store, large, meta_large) == value(4000)

    meta_small, meta_large = run(tmp_path, write)
    run(tmp_path, read)


# --- failed uploads keep nothing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (10, 9),  # inline: too many bytes
        (10, 11),  # inline: too few bytes
        (5000, 4999),  # file: too many bytes
        (5000, 5001),  # file: too few bytes
        (5000, 10),  # file-sized upload announced as inline-sized
        (10, 5000),  # inline-sized upload announced as file-sized
        (5000, 0),
        (0, 1),
    ],
)
def test_size_mismatch_keeps_nothing(tmp_path: Path, size: int, expected: int) -> None:
    blob, version = new_blob("/mismatch")

    async def body(store: BlobStore) -> None:
        with pytest.raises(SizeMismatch):
            await store.put(
                blob, "/mismatch", version, chunked(value(size)), expected_size=expected
            )
        assert_nothing_kept(store, blob)

    run(tmp_path, body)


def test_size_mismatch_stops_reading_at_the_excess(tmp_path: Path) -> None:
    blob, version = new_blob("/stop")
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        # Bounded, so a regression fails instead of filling the disk.
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield b"x" * 100

    async def body(store: BlobStore) -> None:
        with pytest.raises(SizeMismatch):
            await store.put(blob, "/stop", version, endless(), expected_size=2000)
        assert pulled == 21  # the first chunk past 2000 bytes ends the upload
        assert_nothing_kept(store, blob)

    run(tmp_path, body)


@pytest.mark.parametrize("fail_after", [0, 333, 999, 1332, 3996])
def test_failing_stream_keeps_nothing(tmp_path: Path, fail_after: int) -> None:
    blob, version = new_blob("/cut")

    async def body(store: BlobStore) -> None:
        with pytest.raises(ConnectionResetError):
            await store.put(blob, "/cut", version, failing(value(5000), fail_after))
        assert_nothing_kept(store, blob)

    run(tmp_path, body)


def test_failed_upload_leaves_earlier_blobs_alone(tmp_path: Path) -> None:
    good, good_version = new_blob("/good")
    bad, bad_version = new_blob("/bad")

    async def body(store: BlobStore) -> None:
        meta = await store.put(good, "/good", good_version, chunked(value(3000)))
        with pytest.raises(ConnectionResetError):
            await store.put(bad, "/bad", bad_version, failing(value(3000), 2000))
        assert store.meta(bad) is None
        assert files_under(store.tmp_dir) == []
        assert files_under(store.blobs_dir) == [store.path(good)]
        assert (store.key_count, store.bytes_used) == (1, 3000)
        assert read_all(store, good, meta) == value(3000)

    run(tmp_path, body)


# --- corruption ---------------------------------------------------------------------------


def test_flipped_byte_in_file_fails_its_block(tmp_path: Path) -> None:
    blob, version = new_blob("/flip")

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/flip", version, chunked(value(5000)))
        where = store.locate_file(blob, meta)
        with store.path(blob).open("r+b") as handle:
            handle.seek(where.offset + 2500)
            byte = handle.read(1)
            handle.seek(where.offset + 2500)
            handle.write(bytes((byte[0] ^ 0x01,)))
        # The header and length still match: the damage shows when the block is read.
        assert store.locate_file(blob, meta) == where
        with pytest.raises(CorruptBlob, match="block 0"):
            read_all(store, blob, meta)
        with pytest.raises(CorruptBlob):
            store.check(blob)

    run(tmp_path, body)


def test_only_the_blocks_a_read_covers_are_read_and_checked(tmp_path: Path) -> None:
    """A value of 3 1/2 blocks with a flipped byte in block 2: a range in blocks 0-1 is
    served; one that reaches block 2 yields blocks 0 and 1, then fails, never bad bytes
    (in pieces of one block or of four: the good blocks before a bad one come out first,
    so a read cut there can go on at another replica from as far as possible)."""
    blob, version = new_blob("/blocks")
    data = os.urandom(3 * BLOCK_SIZE + BLOCK_SIZE // 2)

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/blocks", version, chunked(data, 100_000))
        where = store.locate_file(blob, meta)
        assert where.header.blocks == 4
        with store.path(blob).open("r+b") as handle:
            handle.seek(where.offset + 2 * BLOCK_SIZE + 7)
            handle.write(b"\x00" if data[2 * BLOCK_SIZE + 7] else b"\x01")
        span = b"".join(read_checked(where, 10, 2 * BLOCK_SIZE - 10))
        assert span == data[10 : 2 * BLOCK_SIZE]
        tail = b"".join(read_checked(where, 3 * BLOCK_SIZE + 5, 100))
        assert tail == data[3 * BLOCK_SIZE + 5 : 3 * BLOCK_SIZE + 105]
        served = []
        with pytest.raises(CorruptBlob, match="block 2"):
            for piece in read_checked(where, 0, len(data), piece=BLOCK_SIZE):
                served.append(piece)  # noqa: PERF402 - what came out before the failure
        assert b"".join(served) == data[: 2 * BLOCK_SIZE]
        pieces = read_checked(where, 0, len(data), piece=4 * BLOCK_SIZE)
        assert next(pieces) == data[: 2 * BLOCK_SIZE]  # in pieces of 4: the good ones first
        with pytest.raises(CorruptBlob, match="block 2"):
            next(pieces)

    run(tmp_path, body)


def test_nowait_reads_only_cached_pieces_and_stays_put_otherwise(tmp_path: Path) -> None:
    """``read(nowait=True)`` of a piece whose pages were evicted raises NotCached without
    moving on; ``read()`` then reads the same piece from the disk, and once cached the next
    nowait read goes on from there: the pieces still make up the value exactly."""
    blob, version = new_blob("/cold")
    data = os.urandom(3 * BLOCK_SIZE + 123)

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/cold", version, chunked(data, 100_000))
        where = store.locate_file(blob, meta)
        drop_from_page_cache(where.path)
        with CheckedReader(where, 5, len(data) - 5, piece=BLOCK_SIZE) as reader:
            with pytest.raises(NotCached):
                reader.read(nowait=True)
            pieces = [bytes(reader.read() or b"")]  # from the disk, now cached
            while (piece := reader.read(nowait=True)) is not None:
                pieces.append(bytes(piece))
        assert b"".join(pieces) == data[5:]
        assert len(pieces) == 4

    run(tmp_path, body)


def test_a_filesystem_without_nowait_reads_is_read_in_the_thread_not_found_corrupt() -> None:
    """tmpfs has no RWF_NOWAIT: there a nowait read is NotCached (the loop then reads in a
    thread), never CorruptBlob, which once made every file value there unreadable."""
    shm = Path("/dev/shm")
    if filesystem(shm / "x") != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    blob, version = new_blob("/shm")
    data = os.urandom(2 * BLOCK_SIZE + 9)
    root = Path(tempfile.mkdtemp(dir=shm))
    try:

        async def body(store: BlobStore) -> None:
            meta = await store.put(blob, "/shm", version, chunked(data, 100_000))
            where = store.locate_file(blob, meta)
            with CheckedReader(where, 0, len(data)) as reader:
                try:
                    piece = reader.read(nowait=True)
                except NotCached:
                    piece = reader.read()
                assert piece is not None and bytes(piece) == data
            with CheckedReader(where, 0, len(data)) as reader:
                try:
                    span = reader.check_next(nowait=True)
                except NotCached:
                    span = reader.check_next()
                assert span == (where.offset, len(data))

        run(root, body)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_check_next_gives_the_file_spans_of_checked_blocks(tmp_path: Path) -> None:
    """``check_next`` checks a span's blocks and gives where the asked bytes lie in the file
    (for sendfile): the spans read back from the file are the value's range; a damaged block
    fails before its span is given, with the good blocks before it given first."""
    blob, version = new_blob("/spans")
    data = os.urandom(5 * BLOCK_SIZE + 77)

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/spans", version, chunked(data, 100_000))
        where = store.locate_file(blob, meta)
        raw = where.path.read_bytes()
        first, count = BLOCK_SIZE // 2, 4 * BLOCK_SIZE
        with CheckedReader(where, first, count, piece=2 * BLOCK_SIZE) as reader:
            spans: list[tuple[int, int]] = []
            while (span := reader.check_next(nowait=len(spans) % 2 == 0)) is not None:
                spans.append(span)
        assert (
            b"".join(raw[offset : offset + n] for offset, n in spans) == data[first : first + count]
        )
        assert [n for _, n in spans] == [2 * BLOCK_SIZE - first, 2 * BLOCK_SIZE, first]
        with where.path.open("r+b") as handle:
            handle.seek(where.offset + 3 * BLOCK_SIZE + 1)
            handle.write(b"\x00" if data[3 * BLOCK_SIZE + 1] else b"\x01")
        with CheckedReader(where, 0, len(data), piece=2 * BLOCK_SIZE) as reader:
            assert reader.check_next() == (where.offset, 2 * BLOCK_SIZE)
            # blocks 2-3: block 2 is given alone, then block 3 fails
            assert reader.check_next(nowait=True) == (where.offset + 2 * BLOCK_SIZE, BLOCK_SIZE)
            with pytest.raises(CorruptBlob, match="block 3"):
                reader.check_next(nowait=True)

    run(tmp_path, body)


def test_a_damaged_digest_table_fails_its_block(tmp_path: Path) -> None:
    blob, version = new_blob("/table")

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/table", version, chunked(value(5000)))
        path = store.path(blob)
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0xFF  # the last byte of the last block's digest
        path.write_bytes(raw)
        with pytest.raises(CorruptBlob):
            read_all(store, blob, meta)

    run(tmp_path, body)


def test_format_1_files_are_still_read_and_checked_by_md5(tmp_path: Path) -> None:
    """A blob file written before block digests (format 1: header, value, nothing after)."""
    blob, version = new_blob("/old")
    data = value(7000)

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/old", version, chunked(data))
        header = BlobHeader("/old", version, len(data), meta.md5)  # format 1
        store.path(blob).write_bytes(header.pack() + data)
        where = store.locate_file(blob, meta)
        assert where.header.block_size == 0
        assert b"".join(read_checked(where, 0, len(data), piece=1000)) == data
        assert b"".join(read_checked(where, 6000, 1000)) == data[6000:]
        assert store.check(blob) == meta
        store.path(blob).write_bytes(header.pack() + data[:-1] + b"?")
        with pytest.raises(CorruptBlob, match="MD5"):
            b"".join(read_checked(store.locate_file(blob, meta), 0, 10))

    run(tmp_path, body)


def test_a_blob_is_never_overwritten_with_other_bytes(tmp_path: Path) -> None:
    """Once stored, a blob id's bytes never change: other bytes are refused (409 on the
    wire), the same bytes again are taken (a repair replacing a damaged copy)."""
    blob, version = new_blob("/once")

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/once", version, chunked(value(5000)))
        with pytest.raises(BlobExists):
            await store.put(blob, "/once", version, chunked(value(5000, seed=1)))
        with pytest.raises(BlobExists):
            await store.put(blob, "/once", version, chunked(b"tiny"))
        assert read_all(store, blob, meta) == value(5000)
        assert files_under(store.tmp_dir) == []
        path = store.path(blob)
        path.write_bytes(path.read_bytes()[:-3])  # damaged
        again = await store.put(blob, "/once", version, chunked(value(5000)))
        assert (again.size, again.md5) == (meta.size, meta.md5)
        assert read_all(store, blob, again) == value(5000)
        assert (store.key_count, store.bytes_used) == (1, 5000)

    run(tmp_path, body)


@pytest.mark.parametrize("change", ["truncate", "extend", "remove", "empty", "header"])
def test_a_damaged_file_is_found_before_any_read(tmp_path: Path, change: str) -> None:
    blob, version = new_blob("/damaged")

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/damaged", version, chunked(value(5000)))
        path = store.path(blob)
        raw = path.read_bytes()
        if change == "truncate":
            path.write_bytes(raw[:-1])
        elif change == "extend":
            path.write_bytes(raw + b"\x00")
        elif change == "remove":
            path.unlink()
        elif change == "empty":
            path.write_bytes(b"")
        else:
            path.write_bytes(b"XXXX" + raw[4:])
        with pytest.raises(CorruptBlob):
            store.locate_file(blob, meta)

    run(tmp_path, body)


def test_header_that_does_not_match_meta_is_corrupt(tmp_path: Path) -> None:
    blob, version = new_blob("/mine")
    other, other_version = new_blob("/theirs")

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/mine", version, chunked(value(5000)))
        theirs = await store.put(other, "/theirs", other_version, chunked(value(5000, 1)))
        # Another blob's file in this blob's place.
        os.replace(store.path(other), store.path(blob))
        with pytest.raises(CorruptBlob):
            store.locate_file(blob, meta)
        assert theirs.size == meta.size

    run(tmp_path, body)


def test_corrupt_key_bytes_in_header_are_corrupt(tmp_path: Path) -> None:
    blob, version = new_blob("/k")

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/k", version, chunked(value(5000)))
        path = store.path(blob)
        raw = bytearray(path.read_bytes())
        raw[BlobHeader.length("/k", BLOCK_SIZE) - 1] = 0xFF  # the "k" of the key
        path.write_bytes(raw)
        with pytest.raises(CorruptBlob):
            store.locate_file(blob, meta)

    run(tmp_path, body)


def test_overwritten_inline_value_is_corrupt(tmp_path: Path) -> None:
    blob, version = new_blob("/inline")
    data = value(300)

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/inline", version, chunked(data))
        assert meta.inline
        store.db.db.put(b"v:" + blob.encode(), b"x" * meta.size)  # same size, other bytes
        with pytest.raises(CorruptBlob):
            store.read_inline(blob, meta)
        store.db.db.put(b"v:" + blob.encode(), data[:-1])  # wrong size
        with pytest.raises(CorruptBlob):
            store.read_inline(blob, meta)
        store.db.db.delete(b"v:" + blob.encode())  # missing
        with pytest.raises(CorruptBlob):
            store.read_inline(blob, meta)
        store.db.db.put(b"v:" + blob.encode(), data)  # restored
        assert store.read_inline(blob, meta) == data

    run(tmp_path, body)


# --- deleting -----------------------------------------------------------------------------


def test_delete_file_blob(tmp_path: Path) -> None:
    blob, version = new_blob("/del")

    async def body(store: BlobStore) -> None:
        await store.put(blob, "/del", version, chunked(value(5000)))
        path = store.path(blob)
        assert path.is_file()
        assert await store.delete(blob) is True
        assert store.meta(blob) is None
        assert not path.exists()
        assert (store.key_count, store.bytes_used) == (0, 0)
        assert await store.delete(blob) is False
        assert (store.key_count, store.bytes_used) == (0, 0)

    run(tmp_path, body)


def test_delete_inline_blob(tmp_path: Path) -> None:
    blob, version = new_blob("/del-inline")

    async def body(store: BlobStore) -> None:
        await store.put(blob, "/del-inline", version, chunked(b"abc"))
        assert await store.delete(blob) is True
        assert store.meta(blob) is None
        assert store.db.get(b"v:" + blob.encode()) is None
        assert (store.key_count, store.bytes_used) == (0, 0)
        assert await store.delete(blob) is False

    run(tmp_path, body)


def test_delete_unknown_blob(tmp_path: Path) -> None:
    blob, _ = new_blob("/never")

    async def body(store: BlobStore) -> None:
        assert await store.delete(blob) is False
        assert (store.key_count, store.bytes_used) == (0, 0)

    run(tmp_path, body)


def test_delete_is_durable(tmp_path: Path) -> None:
    keep, keep_version = new_blob("/keep")
    drop, drop_version = new_blob("/drop")

    async def write(store: BlobStore) -> None:
        await store.put(keep, "/keep", keep_version, chunked(value(2000)))
        await store.put(drop, "/drop", drop_version, chunked(value(2000)))
        assert await store.delete(drop)

    async def check(store: BlobStore) -> None:
        assert store.meta(drop) is None and store.meta(keep) is not None
        assert files_under(store.blobs_dir) == [store.path(keep)]
        assert (store.key_count, store.bytes_used) == (1, 2000)

    run(tmp_path, write)
    run(tmp_path, check)


# --- start-up -----------------------------------------------------------------------------


def test_leftover_tmp_files_are_removed_on_open(tmp_path: Path) -> None:
    blob, version = new_blob("/kept")

    async def write(store: BlobStore) -> None:
        await store.put(blob, "/kept", version, chunked(value(3000)))

    run(tmp_path, write)
    tmp = tmp_path / "tmp"
    (tmp / f"{blob}.deadbeef").write_bytes(b"half an upload")
    (tmp / "junk").write_bytes(b"")

    async def check(store: BlobStore) -> None:
        assert files_under(store.tmp_dir) == []
        # Stored blobs are untouched.
        assert files_under(store.blobs_dir) == [store.path(blob)]
        meta = store.meta(blob)
        assert meta is not None
        assert read_all(store, blob, meta) == value(3000)

    run(tmp_path, check)


def test_open_creates_layout(tmp_path: Path) -> None:
    root = tmp_path / "fresh" / "worker"

    async def main() -> None:
        store = BlobStore(root)
        await store.close()

    asyncio.run(main())
    assert (root / "blobs").is_dir() and (root / "tmp").is_dir() and (root / "index").is_dir()


# --- accounting ---------------------------------------------------------------------------


def test_counts_track_puts_and_deletes_and_survive_reopen(tmp_path: Path) -> None:
    blobs = {f"/n{i}": new_blob(f"/n{i}") for i in range(4)}
    sizes = {"/n0": 10, "/n1": 3000, "/n2": 0, "/n3": 1500}

    async def write(store: BlobStore) -> None:
        assert (store.key_count, store.bytes_used) == (0, 0)
        total = 0
        for count, (key, (blob, version)) in enumerate(blobs.items(), 1):
            await store.put(blob, key, version, chunked(value(sizes[key])))
            total += sizes[key]
            assert (store.key_count, store.bytes_used) == (count, total)
        # Storing the same blob again replaces it: no double count.
        blob, version = blobs["/n1"]
        await store.put(blob, "/n1", version, chunked(value(sizes["/n1"])))
        assert (store.key_count, store.bytes_used) == (4, 4510)
        assert await store.delete(blobs["/n3"][0])
        assert (store.key_count, store.bytes_used) == (3, 3010)
        # A failed put changes nothing.
        extra, extra_version = new_blob("/x")
        with pytest.raises(SizeMismatch):
            await store.put(extra, "/x", extra_version, chunked(b"abc"), expected_size=4)
        assert (store.key_count, store.bytes_used) == (3, 3010)

    async def reopen(store: BlobStore) -> None:
        assert (store.key_count, store.bytes_used) == (3, 3010)

    run(tmp_path, write)
    run(tmp_path, reopen)


def test_counts_are_recomputed_from_the_index(tmp_path: Path) -> None:
    blob, version = new_blob("/r")

    async def write(store: BlobStore) -> None:
        await store.put(blob, "/r", version, chunked(value(2000)))
        store.key_count, store.bytes_used = 99, 99  # in-memory values are not persisted

    async def reopen(store: BlobStore) -> None:
        assert (store.key_count, store.bytes_used) == (1, 2000)

    run(tmp_path, write)
    run(tmp_path, reopen)


def test_concurrent_deletes_count_once(tmp_path: Path) -> None:
    blob, version = new_blob("/twice")

    async def body(store: BlobStore) -> None:
        await store.put(blob, "/twice", version, chunked(value(10)))
        await asyncio.gather(store.delete(blob), store.delete(blob))
        assert (store.key_count, store.bytes_used) == (0, 0)

    run(tmp_path, body)


def test_concurrent_puts_of_one_blob_count_once(tmp_path: Path) -> None:
    blob, version = new_blob("/twice")

    async def body(store: BlobStore) -> None:
        await asyncio.gather(
            store.put(blob, "/twice", version, chunked(value(10))),
            store.put(blob, "/twice", version, chunked(value(10))),
        )
        assert (store.key_count, store.bytes_used) == (1, 10)

    run(tmp_path, body)


# --- listing ------------------------------------------------------------------------------


def test_iter_meta_from_is_in_blob_id_order(tmp_path: Path) -> None:
    keys = [f"/list/{i}" for i in range(8)]
    made = {key: new_blob(key) for key in keys}

    async def body(store: BlobStore) -> None:
        for i, key in reversed(list(enumerate(keys))):  # stored out of order
            blob, version = made[key]
            # Inline and file-backed blobs alike.
            await store.put(blob, key, version, chunked(value(5 if i % 2 else 1500)))
        ids = sorted(blob for blob, _ in made.values())
        listed = list(store.iter_meta_from(""))
        assert [blob for _, blob in listed] == ids
        for meta, blob in listed:
            assert meta == store.meta(blob)
            assert blob == blob_id(meta.key, meta.version)
        assert [m.key for m in store.iter_meta()] == [m.key for m, _ in listed]
        # From an existing id: that id and those after it.
        assert [blob for _, blob in store.iter_meta_from(ids[3])] == ids[3:]
        # From between two ids: the ones after.
        assert [blob for _, blob in store.iter_meta_from(ids[3] + "0")] == ids[4:]
        assert [blob for _, blob in store.iter_meta_from(ids[-1])] == ids[-1:]
        assert list(store.iter_meta_from("g")) == []  # past every hex id
        # Inline bytes ("v:" entries) are never listed as metadata.
        assert len(listed) == len(keys)

    run(tmp_path, body)


def test_free_bytes(tmp_path: Path) -> None:
    async def body(store: BlobStore) -> None:
        assert store.free_bytes() > 0

    run(tmp_path, body)


# --- a value's metadata (format 3) --------------------------------------------------------

S3_META = (("content-type", "image/jpeg"), ("x-amz-meta-colour", "ginger"))


def test_a_file_with_metadata_is_format_3_and_keeps_it_last(tmp_path: Path) -> None:
    key, data = "/meta/big", value(5000)
    blob, version = new_blob(key)

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, key, version, chunked(data), len(data), S3_META)
        assert meta.meta == S3_META and store.meta(blob) == meta
        raw = store.path(blob).read_bytes()
        block = meta_block(S3_META)
        header = BlobHeader.unpack(raw)
        assert header == BlobHeader.with_meta(key, version, len(data), meta.md5, BLOCK_SIZE, block)
        assert header.format == 3
        # header, value, the digest table, then the metadata block
        assert raw[header.data_offset : header.data_offset + len(data)] == data
        assert raw[header.meta_offset - BLOCK_DIGEST.size : header.meta_offset] == block_digest(
            data
        )
        assert raw[header.meta_offset :] == block and len(raw) == header.file_size
        where = store.locate_file(blob, meta)
        assert read_meta(where) == S3_META
        assert read_all(store, blob, meta) == data
        assert store.check(blob) == meta

    run(tmp_path, body)


def test_an_inline_value_keeps_its_metadata_in_its_blob_meta(tmp_path: Path) -> None:
    blob, version = new_blob("/meta/small")

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/meta/small", version, chunked(b"hi"), 2, S3_META)
        assert meta.inline and store.meta(blob) == meta and meta.meta == S3_META
        assert store.check(blob) == meta

    run(tmp_path, body)


def test_metadata_given_after_the_value_is_kept(tmp_path: Path) -> None:
    """An upload whose metadata follows its bytes: the store asks for it once they ended,
    and a file is laid out for it from the start (format 3, even if there is none)."""
    blob, version = new_blob("/meta/late")
    other, other_version = new_blob("/meta/late-none")
    asked: list[int] = []

    def late() -> tuple[tuple[str, str], ...]:
        asked.append(1)
        return S3_META

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/meta/late", version, chunked(value(5000)), 5000, late)
        assert asked == [1] and meta.meta == S3_META
        assert read_meta(store.locate_file(blob, meta)) == S3_META
        none = await store.put(
            other, "/meta/late-none", other_version, chunked(value(5000)), 5000, lambda: ()
        )
        header = store.locate_file(other, none).header
        assert none.meta == () and (header.format, header.meta_length) == (3, 0)

    run(tmp_path, body)


def test_a_value_without_metadata_is_written_as_before(tmp_path: Path) -> None:
    blob, version = new_blob("/plain")

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/plain", version, chunked(value(5000)), 5000)
        assert BlobHeader.unpack(store.path(blob).read_bytes()).format == 2
        assert meta.meta == () and b'"meta"' not in (store.db.get(b"m:" + blob.encode()) or b"")

    run(tmp_path, body)


def test_metadata_over_the_limit_keeps_nothing(tmp_path: Path) -> None:
    blob, version = new_blob("/meta/huge")
    huge = (("x-amz-meta-big", "x" * MAX_META_BYTES),)

    async def body(store: BlobStore) -> None:
        for size, meta in ((5000, huge), (10, huge)):
            with pytest.raises(MetaTooLarge):
                await store.put(blob, "/meta/huge", version, chunked(value(size)), size, meta)
            assert_nothing_kept(store, blob)
        with pytest.raises(MetaTooLarge):
            await store.put(blob, "/meta/huge", version, chunked(value(5000)), 5000, lambda: huge)
        assert_nothing_kept(store, blob)

    run(tmp_path, body)


@pytest.mark.parametrize("where", ["block", "length", "digest"])
def test_a_damaged_metadata_block_is_found(tmp_path: Path, where: str) -> None:
    """A flipped byte in the block fails the deep check (scrub, repair) and a read of the
    metadata; one in the header's length or digest of it fails every read."""
    blob, version = new_blob("/meta/flip")

    async def body(store: BlobStore) -> None:
        meta = await store.put(blob, "/meta/flip", version, chunked(value(5000)), 5000, S3_META)
        header = store.locate_file(blob, meta).header
        at = {
            "block": header.meta_offset + 3,
            "length": FIXED_HEADER + 4 + 3,
            "digest": FIXED_HEADER + 4 + 4 + 2,
        }[where]
        with store.path(blob).open("r+b") as handle:
            handle.seek(at)
            byte = handle.read(1)
            handle.seek(at)
            handle.write(bytes((byte[0] ^ 0x01,)))
        if where == "block":
            where_ = store.locate_file(blob, meta)  # the header still matches
            assert read_all(store, blob, meta) == value(5000)  # the value is intact
            with pytest.raises(CorruptBlob, match="metadata block fails its checksum"):
                read_meta(where_)
        else:
            with pytest.raises(CorruptBlob):
                store.locate_file(blob, meta)
        with pytest.raises(CorruptBlob):
            store.check(blob)

    run(tmp_path, body)


def test_a_repair_gives_a_copy_its_metadata(tmp_path: Path) -> None:
    """The same bytes again replace a copy, metadata and all (a copy written before workers
    kept metadata, or one whose metadata block was damaged)."""
    blob, version = new_blob("/meta/again")

    async def body(store: BlobStore) -> None:
        await store.put(blob, "/meta/again", version, chunked(value(5000)), 5000)
        meta = await store.put(blob, "/meta/again", version, chunked(value(5000)), 5000, S3_META)
        assert store.meta(blob) == meta and store.check(blob) == meta
        assert store.key_count == 1

    run(tmp_path, body)
