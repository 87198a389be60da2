"""worker/recovery.py on a real LevelDB and real files (tmp_path): what opening a store does
with damage, and what it must never do to a store that is only unreachable for a while."""

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kittenfs.placement import blob_id, blob_relpath, new_version
from kittenfs.worker.blobstore import BlobStore
from kittenfs.worker.heartbeat import RECHECK_MARKER
from kittenfs.worker.recovery import Recovery, StoreUnusable, open_store


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def fill(root: Path, inline: int, files: int) -> None:
    """Store ``inline`` small and ``files`` file-backed values under ``root``."""

    async def main() -> None:
        store = BlobStore(root, inline_max=1000)
        for i in range(inline + files):
            key, version = f"/r/{i}", new_version()
            data = os.urandom(10 if i < inline else 5000)
            await store.put(blob_id(key, version), key, version, _chunks(data), len(data))
        await store.close()

    asyncio.run(main())


def reopen(root: Path, registered: bool = True) -> tuple[int, Recovery]:
    async def main() -> tuple[int, Recovery]:
        store, recovery = await open_store(root, registered, lambda _: None, inline_max=1000)
        count = store.key_count
        await store.close()
        return count, recovery

    return asyncio.run(main())


def test_a_store_that_cannot_be_opened_for_now_is_left_as_it_is(tmp_path: Path) -> None:
    """An I/O error (here the LOCK file is a directory; a full disk or the open-files limit
    do the same) is not damage: nothing is repaired, moved or emptied, and the worker does
    not start; once the cause is gone, everything is there."""
    fill(tmp_path, inline=50, files=5)
    index = tmp_path / "index"

    def data_files() -> dict[str, bytes]:  # (LevelDB's own info LOG may turn over)
        return {
            p.name: p.read_bytes()
            for p in index.iterdir()
            if p.is_file() and not p.name.startswith(("LOG", "LOCK"))
        }

    before = data_files()
    (index / "LOCK").unlink()
    (index / "LOCK").mkdir()
    with pytest.raises(StoreUnusable, match="nothing was changed"):
        reopen(tmp_path)
    assert data_files() == before
    assert not list(tmp_path.glob("index.damaged-*"))
    (index / "LOCK").rmdir()
    count, recovery = reopen(tmp_path)
    assert count == 55 and not recovery.problems


def test_lost_blob_directories_are_noticed(tmp_path: Path) -> None:
    """Metadata whose files went with their whole directory (here all of blobs/) is dropped,
    and the worker asks for a recheck."""
    fill(tmp_path, inline=3, files=20)
    shutil.rmtree(tmp_path / "blobs")
    count, recovery = reopen(tmp_path)
    assert recovery.dropped == 20 and count == 3
    assert (tmp_path / RECHECK_MARKER).exists()


def test_files_without_metadata_get_it_back(tmp_path: Path) -> None:
    fill(tmp_path, inline=0, files=10)
    shutil.rmtree(tmp_path / "index")
    count, recovery = reopen(tmp_path)
    assert count == 10 and recovery.restored == 10
    assert recovery.problems == ["it was lost or emptied (made anew)"]
    assert (tmp_path / RECHECK_MARKER).exists()


def test_a_new_store_is_not_taken_for_a_lost_one(tmp_path: Path) -> None:
    count, recovery = reopen(tmp_path, registered=False)
    assert count == 0 and not recovery.problems
    assert not (tmp_path / RECHECK_MARKER).exists()
    count, recovery = reopen(tmp_path, registered=True)  # restarted, still empty: fine
    assert count == 0 and not recovery.problems


def test_files_give_back_their_values_metadata(tmp_path: Path) -> None:
    """A lost LevelDB's BlobMeta comes back from format-3 files with the value's metadata;
    a file whose metadata block is damaged is left out (counted unreadable), never restored
    without it."""
    meta = (("content-type", "text/plain"), ("x-amz-meta-cat", "tom"))
    blobs: list[str] = []

    async def main() -> None:
        store = BlobStore(tmp_path, inline_max=1000)
        for i in range(3):
            key, version = f"/m/{i}", new_version()
            blobs.append(blob_id(key, version))
            await store.put(blobs[-1], key, version, _chunks(os.urandom(5000)), 5000, meta)
        await store.close()

    asyncio.run(main())
    with (tmp_path / "blobs" / blob_relpath(blobs[2])).open("r+b") as handle:
        handle.seek(-2, os.SEEK_END)
        handle.write(b"!")
    shutil.rmtree(tmp_path / "index")

    async def after() -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        store, recovery = await open_store(tmp_path, True, lambda _: None, inline_max=1000)
        assert (recovery.restored, recovery.unreadable) == (2, 1)
        held = [(blob, m.meta) for m, blob in store.iter_meta_from("")]
        await store.close()
        return held

    assert sorted(asyncio.run(after())) == sorted((blob, meta) for blob in blobs[:2])
