"""Scrub: a worker reads back what it stores, slowly, and reports what went bad.

Disks rot quietly.  In the background a worker checks every blob it holds (every byte against
its MD5, as ``GET /check/<id>`` does) at ``--scrub-rate`` bytes per second, one pass after
another with ``--scrub-interval`` seconds between passes.  It reports the corrupt blobs to
the master (``POST /_workers/corrupt``), which queues their keys for repair; the worker
itself already refuses to serve them.
"""

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .blobstore import BlobStore, CorruptBlob

log = logging.getLogger("kittenfs.worker")

#: Blob ids read from the index at a time.
PAGE = 100

Report = Callable[[list[dict[str, str]]], Awaitable[None]]


@dataclass
class ScrubCounts:
    """What the scrub has done since the worker started (its metrics read them)."""

    checked: int = 0
    corrupt: int = 0


async def scrub_forever(
    store: BlobStore, rate: float, interval: float, report: Report, counts: ScrubCounts
) -> None:
    """Check every blob at ``rate`` bytes a second, pass after pass, reporting corrupt ones
    and counting both in ``counts``."""
    while True:
        checked, corrupt = await scrub_once(store, rate, report, counts)
        log.info("scrub pass done: %d blobs checked, %d corrupt", checked, corrupt)
        await asyncio.sleep(interval)


async def scrub_once(
    store: BlobStore, rate: float, report: Report, counts: ScrubCounts | None = None
) -> tuple[int, int]:
    """Run one pass; return (blobs checked, corrupt blobs found), also added to ``counts``
    blob by blob."""
    counts = counts or ScrubCounts()
    checked = corrupt = 0
    start = ""
    while True:
        # PAGE + 1 items: the extra one starts the next page.
        page = list(itertools.islice(store.iter_meta_from(start), PAGE + 1))
        for meta, blob in page[:PAGE]:
            try:
                await asyncio.to_thread(store.check, blob)
            except CorruptBlob as exc:
                corrupt += 1
                counts.corrupt += 1
                log.error("scrub: blob %s (key %r) is corrupt: %s", blob, meta.key, exc)
                await _report(report, [{"blob": blob, "key": meta.key, "version": meta.version}])
            checked += 1
            counts.checked += 1
            await asyncio.sleep(max(meta.size, 4096) / rate)
        if len(page) <= PAGE:
            return checked, corrupt
        start = page[PAGE][1]


async def _report(report: Report, blobs: list[dict[str, str]]) -> None:
    try:
        await report(blobs)
    except Exception as exc:
        log.warning("scrub: could not report to the master: %s", exc)
