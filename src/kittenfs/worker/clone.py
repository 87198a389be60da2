"""Clone: a new worker starts as a copy of an existing one, streamed over HTTP.

``kittenfs worker --clone-from INDEX`` asks the master where worker INDEX is, then copies
every blob it lists (``GET /blobs``, then ``GET /blob/<id>``), each checked against the MD5
the source lists and kept with the metadata it lists, before this worker registers.  A blob
it already holds intact (with that metadata) is skipped, so a clone cut off by a crash goes
on where it stopped when the worker starts again (it clones until its first registration).
A blob that cannot be copied (the source fails on it) is left out and logged.  Once
registered, the worker asks the master to adopt what it holds (``POST
/_workers/<index>/adopt``): every blob that is the current version of its key gets this
worker added to the key's replicas.  Until the master has answered, a marker file
(``adopt.pending``) makes the worker ask again after a restart.
"""

import logging
import ssl
import time
from collections.abc import AsyncIterator

import aiohttp

from ..clusterauth import session_middlewares
from ..master.replica_io import list_blobs
from ..records import BlobListing
from ..signing import ClusterKey
from ..throttle import Throttle
from .blobstore import BlobStore, SizeMismatch

log = logging.getLogger("kittenfs.worker")

#: Blobs listed per request.
PAGE = 1000
#: Chunk size of copied values.
CHUNK = 256 * 1024
#: Seconds between two progress lines in the log.
PROGRESS_EVERY = 5.0


class CloneError(Exception):
    """The source cannot be found or read; the message says why."""


async def clone(
    master: str,
    source: int,
    store: BlobStore,
    bytes_per_s: float = 0.0,
    key: ClusterKey | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, int]:
    """Copy every blob of worker ``source`` into ``store`` at up to ``bytes_per_s`` (0: no
    limit); return (copied, skipped).  ``key``: the cluster secret's, which the master and
    the source ask of a member."""
    throttle = Throttle(bytes_per_s=bytes_per_s)
    progress = _Progress()
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)
    async with aiohttp.ClientSession(
        timeout=timeout,
        connector=aiohttp.TCPConnector(ssl=tls or True),
        middlewares=session_middlewares(key),
    ) as session:
        url, progress.total = await _source_url(session, master.rstrip("/"), source)
        copied = skipped = failed = 0
        async for blob in list_blobs(session, url, PAGE):
            held = store.meta(blob.blob)
            if held is not None and (held.md5, held.meta) == (blob.md5, blob.meta):
                skipped += 1
                continue
            progress.note(blob.size)
            try:
                copied += await _copy(session, url, blob, store)
            except (aiohttp.ClientError, OSError, SizeMismatch) as exc:
                failed += 1  # left out: adopt skips it, and repair or rebalance fill it
                log.error("clone: blob %s not copied: %s", blob.blob, exc)
            await throttle.take(1, blob.size)
    log.info(
        "cloned worker %d (%s): %d blobs copied, %d already here, %d failed",
        source,
        url,
        copied,
        skipped,
        failed,
    )
    return copied, skipped


class _Progress:
    """Logs how far a clone is (blobs, bytes, ETA) every PROGRESS_EVERY seconds: the worker
    does not serve HTTP yet, so its log is where an operator watches."""

    def __init__(self) -> None:
        self.total = 0
        self.done = self.bytes = 0
        self.started = self.logged = time.monotonic()

    def note(self, size: int) -> None:
        self.done += 1
        self.bytes += size
        now = time.monotonic()
        if now - self.logged >= PROGRESS_EVERY:
            self.logged = now
            left = (now - self.started) / self.done * max(0, self.total - self.done)
            log.info(
                "clone: %d/%d blobs, %d bytes, about %.0f s left",
                self.done,
                self.total,
                self.bytes,
                left,
            )


async def _source_url(session: aiohttp.ClientSession, master: str, source: int) -> tuple[str, int]:
    async with session.get(f"{master}/_cluster") as resp:
        resp.raise_for_status()
        workers = (await resp.json())["workers"]
    for worker in workers:
        if worker["index"] == source:
            if worker["state"] != "up":
                raise CloneError(f"worker {source} is down; it cannot be cloned now")
            return str(worker["url"]).rstrip("/"), int(worker["key_count"] or 0)
    raise CloneError(f"the master has no worker {source}")


async def _copy(
    session: aiohttp.ClientSession, url: str, blob: BlobListing, store: BlobStore
) -> int:
    """Copy one blob; return 1, or 0 if it went away meanwhile or arrived damaged."""
    async with session.get(f"{url}/blob/{blob.blob}") as resp:
        if resp.status == 404:
            return 0  # deleted since it was listed
        resp.raise_for_status()

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in resp.content.iter_chunked(CHUNK):
                yield chunk

        meta = await store.put(blob.blob, blob.key, blob.version, chunks(), blob.size, blob.meta)
    if meta.md5 != blob.md5:
        log.error(
            "clone: blob %s arrived with MD5 %s, %s expected; dropped",
            blob.blob,
            meta.md5,
            blob.md5,
        )
        await store.delete(blob.blob)
        return 0
    return 1
