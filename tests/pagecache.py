"""Evicting a file's pages from the page cache, as memory pressure would: the way tests make
a worker's next read wait for the disk (and so go to a thread)."""

import os
from pathlib import Path

import pytest


def filesystem(path: Path) -> str:
    """The type of the filesystem ``path`` is on (the longest mount point above it)."""
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        _, point, fstype = line.split()[:3]
        if str(path).startswith(point.rstrip("/") + "/") and len(point) > len(best):
            best, kind = point, fstype
    return kind


def drop_from_page_cache(path: Path) -> None:
    """Evict a file's (clean: fsynced) pages; skip the test on tmpfs, whose pages are the
    file and cannot be evicted."""
    if filesystem(path) == "tmpfs":
        pytest.skip("tmpfs keeps every page of its files")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
