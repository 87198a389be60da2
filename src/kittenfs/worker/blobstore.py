"""Blob store: how a worker keeps values on its own disk.

Layout under the worker's data directory (docs/format.md):

- ``index/``  LevelDB: ``m:<blob>`` -> BlobMeta, and ``v:<blob>`` -> the bytes of inline blobs;
- ``blobs/ab/cd/<blob>``  one file per large blob: a BlobHeader, then the value (and, for a
  value with metadata, its metadata block last);
- ``tmp/``  uploads in progress, removed at start.

A blob is one version of one key; its id begins with the hash of the key, so its location
follows from the key.  Values up to ``inline_max`` bytes live in LevelDB (a synced batch is
faster there than a file, fsync and rename); larger ones are streamed to a temp file, fsynced,
renamed into place and their directory fsynced.  ``put`` returns only once the blob is durable.
"""

import asyncio
import errno
import hashlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import plyvel
import xxhash

from ..config import WorkerConfig
from ..ldb import SyncedDB
from ..locks import KeyLocks
from ..placement import blob_relpath
from ..records import (
    BLOCK_DIGEST,
    MAX_HEADER_LENGTH,
    BlobHeader,
    BlobMeta,
    Meta,
    RecordError,
    block_digest,
    decode,
    encode,
    meta_block,
)

log = logging.getLogger("kittenfs.worker")

#: Values up to this many bytes are stored inline in LevelDB (measured: docs/format.md); the
#: default of the setting --inline-max (config.py).
DEFAULT_INLINE_MAX: int = WorkerConfig.inline_max
#: Bytes of a read checked before its response starts (the rest as it is sent); the default
#: of the setting --verify-max.
DEFAULT_VERIFY_MAX: int = WorkerConfig.verify_max
#: Bytes per checksummed block of a blob file (format 2; docs/format.md says why this size).
BLOCK_SIZE = 256 * 1024
#: Bytes a read takes from the disk at a time (whole blocks), each checked before it is sent.
READ_PIECE = 1024 * 1024


class CorruptBlob(Exception):
    """A stored blob does not match its recorded size or checksum; never serve it."""


class SizeMismatch(Exception):
    """An upload carried more or fewer bytes than it announced."""


class BlobExists(Exception):
    """A blob of this id is held with other bytes: a blob, once stored, never changes."""


@dataclass(frozen=True, slots=True)
class BlobFile:
    """A file-backed blob whose header matches its metadata: ``header.size`` bytes of value
    at ``header.data_offset`` in ``path``."""

    path: Path
    header: BlobHeader

    @property
    def offset(self) -> int:
        return self.header.data_offset

    @property
    def size(self) -> int:
        return self.header.size


def meta_key(blob: str) -> bytes:
    """Return the LevelDB key of a blob's metadata."""
    return b"m:" + blob.encode("ascii")


def _value_key(blob: str) -> bytes:
    return b"v:" + blob.encode("ascii")


class BlobStore:
    """The blobs of one worker: LevelDB for metadata and small values, files for large ones."""

    def __init__(
        self,
        root: Path,
        inline_max: int = DEFAULT_INLINE_MAX,
        verify_max: int = DEFAULT_VERIFY_MAX,
        capacity: int = 0,
        db: SyncedDB | None = None,
    ) -> None:
        """Open the store under ``root`` (its LevelDB ``db`` if already open: recovery.py
        opens it, checked, for a worker).  Raise plyvel.CorruptionError if counting what it
        holds meets a damaged table."""
        self.root = root
        self.capacity = capacity  # bytes of values this worker may hold; 0: the disk's limit
        self.inline_max = inline_max
        self.verify_max = verify_max
        self.blobs_dir = root / "blobs"
        self.tmp_dir = root / "tmp"
        for folder in (self.blobs_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._clear_tmp()
        self.db = db if db is not None else SyncedDB(str(root / "index"))
        self._locks = KeyLocks()  # one blob's commit and count update at a time
        self._durable_dirs: set[Path] = set()  # blobs/ab/cd dirs whose entries are fsynced
        self.key_count, self.bytes_used = self.count()

    def _clear_tmp(self) -> None:
        """Remove uploads a crash left behind: no write was acknowledged for them."""
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink(missing_ok=True)

    def count(self) -> tuple[int, int]:
        """Return how many blobs the store holds and their bytes (reads every metadata)."""
        count = used = 0
        for meta in self.iter_meta():
            count, used = count + 1, used + meta.size
        return count, used

    def iter_meta(self) -> Iterator[BlobMeta]:
        """Yield the metadata of every blob held, in blob-id order."""
        for meta, _ in self.iter_meta_from(""):
            yield meta

    def iter_meta_from(self, start: str) -> Iterator[tuple[BlobMeta, str]]:
        """Yield (metadata, blob id) of the blobs held from id ``start`` on, in id order."""
        for raw_key, raw in self.db.scan(b"m:", meta_key(start)):
            yield decode(BlobMeta, raw), raw_key[2:].decode("ascii")

    def free_bytes(self) -> int:
        """Return the bytes free for values: on the disk, and under the capacity if one is set."""
        free = shutil.disk_usage(self.root).free
        return min(free, max(0, self.capacity - self.bytes_used)) if self.capacity else free

    def _check_room(self, size: int) -> None:
        """Refuse a value that would take the store over its capacity, exactly as a full disk
        does (ENOSPC), so the worker answers 507 and keeps nothing."""
        if self.capacity and self.bytes_used + size > self.capacity:
            raise OSError(
                errno.ENOSPC, f"capacity of {self.capacity} bytes reached ({self.bytes_used} used)"
            )

    def meta(self, blob: str) -> BlobMeta | None:
        """Return the metadata of a blob, or None if this worker does not hold it; raise
        CorruptBlob if the LevelDB block that holds it is damaged."""
        try:
            raw = self.db.get(meta_key(blob))
            return None if raw is None else decode(BlobMeta, raw)
        except (plyvel.Error, RecordError) as exc:
            raise CorruptBlob(f"blob {blob}: its metadata is unreadable: {exc}") from None

    def path(self, blob: str) -> Path:
        """Return where a file-backed blob lives."""
        return self.blobs_dir / blob_relpath(blob)

    async def put(
        self,
        blob: str,
        key: str,
        version: str,
        chunks: AsyncIterator[bytes],
        expected_size: int | None = None,
        meta: Meta | Callable[[], Meta] = (),
    ) -> BlobMeta:
        """Store the bytes of ``chunks`` as a blob and return its metadata once durable.

        ``meta`` is the value's metadata (kept in BlobMeta, and in a file's metadata block),
        or a function that returns it once ``chunks`` has ended (an upload whose metadata
        follows the value).  A file-backed value is written in format 3 when it has metadata
        or may have (a function), else in format 2.  Raise SizeMismatch unless exactly
        ``expected_size`` bytes arrive (when it is given), MetaTooLarge for metadata over its
        limit.  On any failure nothing is kept.
        """
        with_meta = callable(meta) or bool(meta)
        digest = hashlib.md5(usedforsecurity=False)
        buffer = bytearray()
        spill: _Spill | None = None
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if expected_size is not None and size > expected_size:
                    raise SizeMismatch(f"more than the announced {expected_size} bytes")
                self._check_room(size)
                digest.update(chunk)
                if spill is None and size <= self.inline_max:
                    buffer += chunk
                    continue
                if spill is None:
                    spill = _Spill(
                        self.tmp_dir / blob,
                        BlobHeader.length(key, BLOCK_SIZE, with_meta),
                        BLOCK_SIZE,
                    )
                    spill.write(buffer)
                    buffer.clear()
                spill.write(chunk)
            if expected_size is not None and size != expected_size:
                raise SizeMismatch(f"{size} bytes arrived, {expected_size} were announced")
            pairs = meta() if callable(meta) else meta
            block = meta_block(pairs)
            stored = BlobMeta(
                key,
                version,
                size,
                digest.hexdigest(),
                spill is None,
                int(time.time() * 1000),
                pairs,
            )
            puts = {meta_key(blob): encode(stored)}
            if stored.inline:
                puts[_value_key(blob)] = bytes(buffer)
            async with self._locks.hold(blob):
                old = self.meta(blob)
                if old is not None and (old.size, old.md5) != (stored.size, stored.md5):
                    raise BlobExists(f"blob {blob} is held with other bytes (MD5 {old.md5})")
                if spill is not None:  # the same bytes again (a repair) replace a bad copy
                    header = (
                        BlobHeader.with_meta(key, version, size, stored.md5, BLOCK_SIZE, block)
                        if with_meta
                        else BlobHeader(key, version, size, stored.md5, BLOCK_SIZE)
                    )
                    await spill.finish(header, block, self.path(blob), self._durable_dirs)
                    spill = None
                await self.db.write(puts)
                self._account(old, -1)
                self._account(stored, +1)
        finally:
            if spill is not None:
                spill.discard()
        return stored

    def _account(self, meta: BlobMeta | None, sign: int) -> None:
        if meta is not None:
            self.key_count += sign
            self.bytes_used += sign * meta.size

    def read_inline(self, blob: str, meta: BlobMeta) -> bytes:
        """Return an inline blob's bytes, checked against its MD5; raise CorruptBlob if bad."""
        try:
            value = self.db.get(_value_key(blob))
        except plyvel.Error as exc:
            raise CorruptBlob(f"inline blob {blob} is unreadable: {exc}") from None
        if value is None or len(value) != meta.size:
            raise CorruptBlob(f"inline blob {blob} is missing or has the wrong size")
        if hashlib.md5(value, usedforsecurity=False).hexdigest() != meta.md5:
            raise CorruptBlob(f"inline blob {blob} fails its MD5 check")
        return value

    def check(self, blob: str) -> BlobMeta | None:
        """Return a blob's metadata once every byte has been checked against it (every block
        digest, the MD5 and a format-3 file's metadata block); None if the blob is not held.
        Raise CorruptBlob if anything does not match.  (Blocking: it reads the whole value;
        run it in a thread.)"""
        meta = self.meta(blob)
        if meta is None:
            return None
        if meta.inline:
            self.read_inline(blob, meta)
            return meta
        where = self.locate_file(blob, meta)
        digest = hashlib.md5(usedforsecurity=False)
        for piece in read_checked(where, 0, meta.size):
            digest.update(piece)
        if digest.hexdigest() != meta.md5:
            raise CorruptBlob(f"blob {blob} fails its MD5 check")
        if read_meta(where) != meta.meta:
            raise CorruptBlob(f"blob {blob}: its metadata block does not match its metadata")
        return meta

    def locate_file(self, blob: str, meta: BlobMeta) -> BlobFile:
        """Return where a file-backed blob's value lies, once its header and length are
        checked against its metadata; raise CorruptBlob if they do not match (or it is gone)."""
        path = self.path(blob)
        try:
            with path.open("rb") as handle:
                header = BlobHeader.unpack(handle.read(MAX_HEADER_LENGTH))
                length = os.fstat(handle.fileno()).st_size
        except FileNotFoundError:
            raise CorruptBlob(f"blob {blob}: its file is gone") from None
        except (OSError, RecordError) as exc:
            raise CorruptBlob(f"blob {blob}: {exc}") from None
        if (header.key, header.version, header.size, header.md5) != (
            meta.key,
            meta.version,
            meta.size,
            meta.md5,
        ) or not header.describes_meta(meta.meta):
            raise CorruptBlob(f"blob {blob}: header does not match its metadata")
        if length != header.file_size:
            raise CorruptBlob(f"blob {blob}: {length} bytes on disk, {header.file_size} expected")
        return BlobFile(path, header)

    async def delete(self, blob: str) -> bool:
        """Remove a blob (metadata, inline bytes and file); return whether it was held.

        The metadata goes first, so a crash can leave at most an unreferenced file.  (An
        inline blob has no file, so none is looked for.)
        """
        async with self._locks.hold(blob):
            meta = self.meta(blob)
            await self.db.write(deletes=(meta_key(blob), _value_key(blob)))
            self._account(meta, -1)
        if meta is not None and meta.inline:
            return True  # its bytes were in the index: no file to remove
        path = self.path(blob)
        try:
            path.unlink()
        except FileNotFoundError:
            return meta is not None
        await asyncio.to_thread(_fsync_dir, path.parent)
        return True

    async def close(self) -> None:
        """Flush pending writes and close the index."""
        await self.db.close()


class _Spill:
    """A temp file that receives a large upload and becomes a blob file once durable: the
    header (written last), the value, then the digest of every ``block_size`` bytes and (in
    format 3) the metadata block."""

    def __init__(self, path: Path, header_length: int, block_size: int) -> None:
        self.tmp = path.with_name(f"{path.name}.{os.urandom(4).hex()}")
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.lseek(self.fd, header_length, os.SEEK_SET)
        self.block_size = block_size
        self._block = xxhash.xxh3_64()
        self._in_block = 0
        self._digests = bytearray()

    def write(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        self._digest(view)
        while view:
            view = view[os.write(self.fd, view) :]

    def _digest(self, view: memoryview) -> None:
        while view:
            take = min(len(view), self.block_size - self._in_block)
            self._block.update(view[:take])
            self._in_block += take
            view = view[take:]
            if self._in_block == self.block_size:
                self._end_block()

    def _end_block(self) -> None:
        self._digests += BLOCK_DIGEST.pack(self._block.intdigest())
        self._block.reset()
        self._in_block = 0

    async def finish(
        self, header: BlobHeader, meta: bytes, final: Path, durable_dirs: set[Path]
    ) -> None:
        if self._in_block:
            self._end_block()
        self._digests += meta
        table = memoryview(self._digests)
        while table:
            table = table[os.write(self.fd, table) :]
        os.pwrite(self.fd, header.pack(), 0)
        fd, self.fd = self.fd, -1  # from here on the thread owns the descriptor
        await asyncio.to_thread(self._persist, fd, final, durable_dirs)

    def _persist(self, fd: int, final: Path, durable_dirs: set[Path]) -> None:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if final.parent not in durable_dirs:
            # Every writer fsyncs the parents until one has finished doing so: a writer that
            # merely sees the directory exist cannot know its entry is durable yet.
            final.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(final.parent.parent)
            _fsync_dir(final.parent.parent.parent)
            durable_dirs.add(final.parent)
        os.replace(self.tmp, final)
        _fsync_dir(final.parent)

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_meta(where: BlobFile) -> Meta:
    """Return the metadata a blob file holds (none before format 3), its block checked
    against the header's digest; raise CorruptBlob if it fails.  (Blocking.)"""
    header = where.header
    if header.meta_length <= 0:
        return ()
    try:
        with where.path.open("rb", buffering=0) as handle:
            block = os.pread(handle.fileno(), header.meta_length, header.meta_offset)
        return header.check_meta_block(block)
    except (OSError, RecordError) as exc:
        raise CorruptBlob(f"{where.path.name}: {exc}") from None


def read_checked(
    where: BlobFile, first: int, count: int, piece: int = READ_PIECE
) -> Iterator[bytes]:
    """Yield ``count`` bytes of a blob file's value from ``first``, in pieces of about
    ``piece`` bytes, each checked before it is yielded; raise CorruptBlob at the first bad
    one.  (Blocking: see CheckedReader.)"""
    with CheckedReader(where, first, count, piece) as reader:
        while (data := reader.read()) is not None:
            yield bytes(data)


#: A piece of a value read from a file: bytes, or a view of a buffer it was read into.
Piece = bytes | bytearray | memoryview


class NotCached(Exception):
    """Some of the bytes asked for are not in the page cache: reading them waits for the disk."""


class CheckedReader:
    """Reads ``count`` bytes of a blob file's value from ``first``, in pieces of about
    ``piece`` bytes, each checked before it is returned; CorruptBlob at the first bad one.

    Format 2 and 3: every block a piece covers is read whole and checked against its digest
    (a piece is a run of whole blocks, read with their digests in two reads); a piece with a
    bad block gives the good blocks before it (``damage_ahead`` says so), and the next read
    fails, so a read cut there resumes at another replica from as far as possible.  Format
    1 has no block digests: the whole value is checked against its MD5 first, then read
    again.

    ``read()`` may wait for the disk, so the event loop calls it in a thread.  But handing
    each piece of a hot value to a thread and back cost a 16 MiB GET more CPU than its bytes
    (the GIL passed back and forth some 800 times: docs/performance.md), so the loop first
    tries ``read(nowait=True)``, which takes the next piece only if all of it is in the
    page cache (``RWF_NOWAIT``; a filesystem without it: always NotCached) and otherwise
    raises NotCached without moving on.
    """

    def __init__(self, where: BlobFile, first: int, count: int, piece: int = READ_PIECE) -> None:
        self.header = where.header
        self.name = where.path.name
        try:
            self._handle = where.path.open("rb", buffering=0)
        except OSError as exc:
            raise CorruptBlob(f"{self.name}: {exc}") from None
        size = self.header.block_size
        self._legacy = (
            None if size else _md5_checked(self._handle, self.header, first, count, piece)
        )
        self._first, self._last = first, first + count - 1
        self._per_piece = max(1, piece // size) if size else 0
        self._block = first // size if size and count else 0
        self._final = self._last // size if size and count else -1
        #: The damage the next read will raise: the last piece was cut short before it.
        self.damage_ahead: CorruptBlob | None = None

    def __enter__(self) -> "CheckedReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._legacy is not None:
            self._legacy.close()
        self._handle.close()

    def read(self, nowait: bool = False) -> Piece | None:
        """Return the next checked piece, or None after the last; with ``nowait``, raise
        NotCached (and stay where it was) unless the piece is all in the page cache."""
        if self._legacy is not None:
            if nowait:
                raise NotCached(self.name)
            try:
                return next(self._legacy, None)
            except OSError as exc:
                raise CorruptBlob(f"{self.name}: {exc}") from None
        run = self._next_run(nowait, None)
        if run is None:
            return None
        data, _, low, high = run
        return data if (low, high) == (0, len(data)) else data[low:high]

    def check_next(self, nowait: bool = False) -> tuple[int, int] | None:
        """Check the next piece without keeping its bytes (format 2 and 3 only); return
        where it lies in the file, (offset, length); None after the last.  ``nowait`` as
        for ``read``."""
        assert self._legacy is None, "a format-1 file has no blocks to check one by one"
        length = self._per_piece * self.header.block_size
        # On the event loop (nowait) every read shares one buffer, in a thread each has its
        # own: a paused stream holds no buffer between its steps.
        scratch = _loop_scratch(length) if nowait else bytearray(length)
        run = self._next_run(nowait, scratch)
        if run is None:
            return None
        _, start, low, high = run
        return self.header.data_offset + start + low, high - low

    def _next_run(
        self, nowait: bool, scratch: bytearray | None
    ) -> tuple[Piece, int, int, int] | None:
        """Read and check the next run of whole blocks (into ``scratch`` if given); return
        it, the value offset it starts at, and the slice of it that was asked for.  A read
        that would wait is NotCached (with ``nowait``), one that fails CorruptBlob."""
        try:
            return self._read_run(nowait, scratch)
        except BlockingIOError:
            raise NotCached(self.name) from None
        except OSError as exc:
            raise CorruptBlob(f"{self.name}: {exc}") from None

    def _read_run(
        self, nowait: bool, scratch: bytearray | None
    ) -> tuple[Piece, int, int, int] | None:
        header, block = self.header, self._block
        if block > self._final:
            return None
        size, offset, fd = header.block_size, header.data_offset, self._handle.fileno()
        blocks = min(self._per_piece, self._final - block + 1)
        start = block * size
        length = min(blocks * size, header.size - start)
        digests = blocks * BLOCK_DIGEST.size
        data = _pread(fd, length, offset + start, nowait, scratch)
        stored = _pread(fd, digests, offset + header.size + block * BLOCK_DIGEST.size, nowait)
        good = _good_blocks(data, stored, size, header.size - start)
        if good == 0:
            raise _bad_block(header, block)
        if good < blocks:  # the good blocks before the bad one first: the next read fails
            blocks, length, data = good, good * size, data[: good * size]
            self.damage_ahead = _bad_block(header, block + good)
        self._block = block + blocks
        low, high = max(self._first, start) - start, min(self._last, start + length - 1) - start
        return data, start, low, high + 1


def _bad_block(header: BlobHeader, block: int) -> CorruptBlob:
    return CorruptBlob(
        f"{header.key!r}: block {block} (bytes {block * header.block_size}.."
        f"{min(header.size, (block + 1) * header.block_size) - 1}) fails its checksum"
    )


def _good_blocks(data: Piece, stored: Piece, size: int, left: int) -> int:
    """Return how many of the blocks in ``data`` match their digests in ``stored``, from
    the first (``left``: the value's bytes from the first block on)."""
    with memoryview(data) as view:
        for i in range(len(stored) // BLOCK_DIGEST.size):
            chunk = view[i * size : (i + 1) * size]
            if (
                len(chunk) != min(size, left - i * size)
                or block_digest(chunk)
                != stored[i * BLOCK_DIGEST.size : (i + 1) * BLOCK_DIGEST.size]
            ):
                return i
    return len(stored) // BLOCK_DIGEST.size


_LOOP_SCRATCH = bytearray()


def _loop_scratch(length: int) -> bytearray:
    """The buffer that checks on the event loop read into (one at a time: the loop runs one
    at a time), grown to ``length`` bytes if smaller."""
    global _LOOP_SCRATCH
    if len(_LOOP_SCRATCH) < length:
        _LOOP_SCRATCH = bytearray(length)
    return _LOOP_SCRATCH


def _pread(fd: int, length: int, offset: int, nowait: bool, into: bytearray | None = None) -> Piece:
    """Read ``length`` bytes at ``offset`` (fewer at the end of the file), into ``into`` if
    given; with ``nowait``, raise NotCached unless every one of them is in the page cache."""
    if into is None and not nowait:
        return os.pread(fd, length, offset)
    buffer = memoryview(bytearray(length) if into is None else into)[:length]
    try:
        got = os.preadv(fd, [buffer], offset, os.RWF_NOWAIT if nowait else 0)
    except OSError as exc:
        if nowait and exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            raise NotCached("this filesystem cannot say (no RWF_NOWAIT)") from None
        raise
    if nowait and got < length and got < os.fstat(fd).st_size - offset:
        raise NotCached("part of the range is not cached")
    return buffer[:got]


def _md5_checked(
    handle: BinaryIO, header: BlobHeader, first: int, count: int, piece: int
) -> Generator[bytes, None, None]:
    handle.seek(header.data_offset)
    digest = hashlib.md5(usedforsecurity=False)
    while chunk := handle.read(piece):
        digest.update(chunk)
    if digest.hexdigest() != header.md5:
        raise CorruptBlob(f"{header.key!r}: the value fails its MD5 check")
    fd, done = handle.fileno(), 0
    while done < count:
        data = os.pread(fd, min(piece, count - done), header.data_offset + first + done)
        if not data:
            raise CorruptBlob(f"{header.key!r}: the file ended early")
        done += len(data)
        yield data
