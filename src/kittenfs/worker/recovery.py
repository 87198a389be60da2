"""Opening a worker's store: its LevelDB checked against its blob files.

Every blob's metadata lives in LevelDB, and every file-backed blob's file names its own key,
version, size and MD5 (docs/format.md).  So at start a worker

1. opens its LevelDB with paranoid checks.  A LevelDB whose CURRENT file is gone (which
   LevelDB would silently reopen nearly empty) or that fails to open or to read is repaired
   with LevelDB's own repair, which keeps what it can read; if that fails too it is moved
   aside (``index.damaged-<time>``) and an empty one takes its place;
2. tells a LevelDB that was lost or emptied (its ``c:store`` marker gone) from a new one;
3. reconciles the metadata with the files: a file without metadata gets it back from its
   header, metadata whose file is gone is dropped.

So it never reports an empty store while files exist.  Whatever was lost with the LevelDB
(inline values) or with the files, the other replicas still hold: a marker file
(``recheck.pending``) has the worker ask the master, once registered, to check every key it
should hold (``POST /_workers/<i>/recheck``), and the master repairs the missing copies.
"""

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import plyvel

from ..ldb import SyncedDB
from ..placement import blob_id, is_blob_id
from ..records import MAX_HEADER_LENGTH, BlobHeader, BlobMeta, RecordError, decode, encode
from .blobstore import BlobFile, BlobStore, CorruptBlob, meta_key, read_meta
from .heartbeat import RECHECK_MARKER

log = logging.getLogger("kittenfs.worker")

#: The LevelDB key that says this database was created by (and belongs to) this store.
STORE_MARKER = b"c:store"


@dataclass
class Recovery:
    """What opening the store found and did."""

    problems: list[str] = field(default_factory=list)
    restored: int = 0  # metadata rebuilt from a file's header
    dropped: int = 0  # metadata whose file is gone
    unreadable: int = 0  # files under blobs/ that are not blobs

    @property
    def lost_anything(self) -> bool:
        """True if copies may have been lost: the master must recheck this worker."""
        return bool(self.problems or self.dropped)


async def open_store(
    root: Path, registered: bool, on_lost: Callable[[str], None], **settings: int
) -> tuple[BlobStore, Recovery]:
    """Open (and if need be recover) the store under ``root``; ``registered``: the worker
    has registered before, so an empty LevelDB means a lost one.  ``settings`` go to
    BlobStore (inline_max, verify_max, capacity).  Leaves RECHECK_MARKER if anything may
    have been lost."""
    recovery = Recovery()
    path = root / "index"
    remedies = [_repair, _move_aside]
    while True:
        db = None
        try:
            db = _open(path, recovery, on_lost)
            store = BlobStore(root, db=db, **settings)  # counting reads every metadata block
            break
        except plyvel.CorruptionError as exc:
            if db is not None:
                db.close_now()
            if not remedies:
                raise StoreUnusable(
                    f"the LevelDB at {path} cannot be opened even new: {exc}"
                ) from None
            recovery.problems.append(remedies.pop(0)(path, exc))
        except plyvel.Error as exc:  # a full disk, too many open files: nothing is damaged
            if db is not None:
                db.close_now()
            raise StoreUnusable(
                f"the LevelDB at {path} cannot be opened ({exc}); nothing "
                "was changed: fix the cause and start again"
            ) from None
    await _check_marker(store, registered, recovery)
    await reconcile(store, recovery)
    if recovery.problems or recovery.restored or recovery.dropped or recovery.unreadable:
        log.error(
            "the store in %s was not as left: LevelDB %s; %d blobs' metadata rebuilt "
            "from their files, %d dropped (file gone), %d unreadable files",
            root,
            "; ".join(recovery.problems) or "fine",
            recovery.restored,
            recovery.dropped,
            recovery.unreadable,
        )
    if recovery.lost_anything:
        (root / RECHECK_MARKER).touch()
    return store, recovery


class StoreUnusable(Exception):
    """The store cannot be opened at all; the worker must not start."""


def _repair(path: Path, exc: plyvel.Error) -> str:
    """LevelDB's repair: it keeps every table and log it can read, and moves what it cannot
    into ``lost/`` (nothing is deleted)."""
    try:
        plyvel.repair_db(str(path))
    except plyvel.Error as failed:
        raise StoreUnusable(
            f"the LevelDB at {path} is damaged ({exc}) and its repair "
            f"failed ({failed}); nothing more was changed"
        ) from None
    return f"it was damaged ({exc}): repaired"


def _move_aside(path: Path, exc: plyvel.Error) -> str:
    aside = path.with_name(f"index.damaged-{int(time.time())}")
    os.replace(path, aside)
    return f"it could not be repaired ({exc}): moved to {aside.name}, and made anew"


def _open(path: Path, recovery: Recovery, on_lost: Callable[[str], None]) -> SyncedDB:
    if path.is_dir() and any(path.iterdir()) and not (path / "CURRENT").exists():
        # LevelDB alone would start anew here and drop every table it no longer names.
        recovery.problems.append("its CURRENT file was gone: repaired")
        try:
            plyvel.repair_db(str(path))
        except plyvel.Error as exc:
            raise StoreUnusable(
                f"the LevelDB at {path} lost its CURRENT file and cannot be "
                f"repaired now ({exc}); nothing more was changed"
            ) from None
    return SyncedDB(str(path), on_lost)


async def _check_marker(store: BlobStore, registered: bool, recovery: Recovery) -> None:
    """Mark a new LevelDB as this store's; notice one that was lost and made anew."""
    if store.db.get(STORE_MARKER) is not None:
        return
    with store.db.scan(b"m:", include_value=False) as metas:
        empty = next(iter(metas), None) is None
    if empty and registered:
        recovery.problems.append("it was lost or emptied (made anew)")
    await store.db.write({STORE_MARKER: b"1"})


async def reconcile(store: BlobStore, recovery: Recovery) -> None:
    """Make the metadata and the blob files agree, one ``blobs/ab/cd`` directory at a time
    (memory stays bounded however many blobs there are): every directory there is, and
    every one the metadata names, there or not."""
    for prefix in sorted(_file_prefixes(store.blobs_dir) | _meta_prefixes(store)):
        folder = store.blobs_dir / prefix[:2] / prefix[2:]
        files = (
            {entry.name for entry in os.scandir(folder) if entry.is_file()}
            if folder.is_dir()
            else set()
        )
        metas = {
            raw_key[2:].decode("ascii"): decode(BlobMeta, raw)
            for raw_key, raw in store.db.scan(b"m:" + prefix.encode("ascii"))
        }
        restored = {
            meta_key(blob): encode(meta)
            for blob in sorted(files - metas.keys())
            if (meta := _from_file(folder / blob, recovery)) is not None
        }
        gone = [
            meta_key(blob) for blob, meta in metas.items() if not meta.inline and blob not in files
        ]
        if restored or gone:
            await store.db.write(restored, gone)
        recovery.restored += len(restored)
        recovery.dropped += len(gone)
    store.key_count, store.bytes_used = store.count()


def _file_prefixes(blobs_dir: Path) -> set[str]:
    """Return the ``abcd`` of every ``blobs/ab/cd`` directory."""
    return {first.name + second.name for first in _subdirs(blobs_dir) for second in _subdirs(first)}


def _meta_prefixes(store: BlobStore) -> set[str]:
    """Return the first four characters of every file-backed blob's id the metadata names
    (at most 65,536 of them)."""
    prefixes = set()
    for meta, blob in store.iter_meta_from(""):
        if not meta.inline:
            prefixes.add(blob[:4])
    return prefixes


def _subdirs(folder: Path) -> list[Path]:
    return [Path(entry.path) for entry in os.scandir(folder) if entry.is_dir()]


def _from_file(path: Path, recovery: Recovery) -> BlobMeta | None:
    """Return the metadata a file without any names in its header (checked against its name
    and length) and, in format 3, its metadata block (checked against its digest); None,
    counted unreadable, if it is not a blob or its metadata block is damaged: a copy without
    its metadata would lose it for good at a rebuild of the master's index."""
    try:
        with path.open("rb") as handle:
            header = BlobHeader.unpack(handle.read(MAX_HEADER_LENGTH))
            length = os.fstat(handle.fileno()).st_size
            created = int(os.fstat(handle.fileno()).st_mtime * 1000)
    except (OSError, RecordError) as exc:
        log.warning("%s is not a readable blob file: %s", path, exc)
        recovery.unreadable += 1
        return None
    if (
        not is_blob_id(path.name)
        or blob_id(header.key, header.version) != path.name
        or length != header.file_size
    ):
        log.warning("%s does not hold the blob its name says", path)
        recovery.unreadable += 1
        return None
    try:
        meta = read_meta(BlobFile(path, header))
    except CorruptBlob as exc:
        log.warning("%s has a damaged metadata block: %s", path, exc)
        recovery.unreadable += 1
        return None
    return BlobMeta(header.key, header.version, header.size, header.md5, False, created, meta)
