"""Garbage collection: bytes on workers that no index record points to (orphans).

The write path never leaves such bytes behind on its own: a pending record names a write's
replicas before they receive a byte, and a failed or replaced version becomes a garbage
entry that the reaper deletes.  Orphans come from outside that contract: a master index lost
or restored from a backup, a worker removed with force and brought back, a disk copied in by
hand, a garbage entry overwritten by a second abandoned move of the same version.

A blob on worker w is referenced when the key's live or unlinked record is that version and
names w, or when a pending record or garbage entry exists for it (the write path or the
reaper owns it).  ``gc`` lists every up worker's blobs, and deletes each unreferenced blob
older than ``grace`` seconds, re-checking under the key's lock just before.  With
``purge_unlinked`` it also deletes every unlinked key.
"""

import time

from ...config import JobOptions
from ...placement import blob_id
from ...records import BlobListing
from ..index import Space
from ..transport import ReplicaTransport
from ..write_path import Store
from . import Job, Throttle

#: Blobs listed per request.
PAGE = 1000
#: Default seconds an unreferenced blob must have existed before it is deleted (config.py).
DEFAULT_GRACE = JobOptions.grace


class Collector:
    """Finds and deletes orphans, one worker at a time."""

    def __init__(self, store: Store, transport: ReplicaTransport) -> None:
        self.store = store
        self.index = store.index
        self.membership = store.membership
        self.transport = transport

    async def run(
        self, job: Job, grace: float, purge_unlinked: bool, dry_run: bool, throttle: Throttle
    ) -> None:
        """Collect orphans on every up worker, then purge unlinked keys if asked."""
        workers = [
            index for index in sorted(self.membership.workers) if self.membership.is_up(index)
        ]
        job.items_total = sum(
            self.membership.workers[i].stats.get("key_count") or 0 for i in workers
        )
        for worker in workers:
            await self._collect(job, worker, grace, dry_run, throttle)
        if purge_unlinked:
            await self._purge_unlinked(job, dry_run)

    async def _collect(
        self, job: Job, worker: int, grace: float, dry_run: bool, throttle: Throttle
    ) -> None:
        async for blob in self.transport.list_blobs(worker, PAGE):
            job.items_done += 1
            if await self.referenced(blob, worker):
                continue
            job.found["orphans"] += 1
            job.found["orphan_bytes"] += blob.size
            if blob.created_ms > (time.time() - grace) * 1000:
                job.found["orphans_in_grace"] += 1
                continue
            if not dry_run:
                await self._delete(job, blob, worker)
                await throttle.take(1, blob.size)

    async def referenced(self, blob: BlobListing, worker: int) -> bool:
        """Return True if any index record accounts for ``blob`` on ``worker``."""
        key, version = blob.key, blob.version
        found = await self.index.current(key)
        if found is not None and found[1].version == version and worker in found[1].replicas:
            return True
        return await self.index.owned(blob_id(key, version))

    async def _delete(self, job: Job, blob: BlobListing, worker: int) -> None:
        async with self.store.locks.hold(blob.key):
            if await self.referenced(blob, worker):  # written or moved there meanwhile
                return
            await self.transport.delete(worker, blob.blob)
        job.fixed["orphans_deleted"] += 1
        job.fixed["bytes_freed"] += blob.size

    async def _purge_unlinked(self, job: Job, dry_run: bool) -> None:
        keys = [record.key async for record in self.index.records(Space.UNLINKED)]
        job.found["unlinked"] += len(keys)
        for key in [] if dry_run else keys:
            await self.store.purge_unlinked(key)
            job.fixed["unlinked_purged"] += 1
