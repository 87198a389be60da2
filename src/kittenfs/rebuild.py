"""Rebuild a master's index from what the workers hold, for when the master's disk is lost.

Every blob names its key, version, size, MD5 and metadata (docs/format.md), so the index can
be rebuilt whole: for each key the newest version held anywhere becomes live, on every worker
that holds it with the same size and MD5, with the metadata its copies hold (the S3 API's
Content-Type, user metadata, checksums and multipart manifests).  Workers keep their ids
and indices.

Nothing is deleted: older versions, and copies that disagree, are left on the workers and
reported.  The newest version may be a write that failed (its clean-up cut off by the same
disaster), in which case the older one is the value to keep; ``kittenfs gc`` removes them
only after its grace period.  A LevelDB index is written to a temporary directory and renamed
into place when complete, and a PostgreSQL one in one transaction, so a rebuild cut off by a
crash leaves no half index for a master.

Limits (docs/operations.md): the workers do not know which keys were unlinked (they come back
live), and a key deleted shortly before the loss, whose copies the reaper had not removed
yet, comes back too.
"""

import asyncio
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .clusterauth import HttpxClusterAuth
from .master.index import open_index
from .master.index.copy import empty
from .master.index.engine import describe, leveldb_path
from .records import BlobListing, IndexRecord, Meta, WorkerInfo
from .signing import ClusterKey

#: Blobs listed per request.
PAGE = 5000


@dataclass
class Found:
    """Every copy of every version of every key, gathered from the workers."""

    workers: list[WorkerInfo] = field(default_factory=list)
    cluster: str | None = None  # the cluster the workers belong to
    copies: dict[str, dict[str, list[tuple[int, BlobListing]]]] = field(default_factory=dict)

    def add(self, worker: int, blob: BlobListing) -> None:
        """Count ``worker``'s copy of a blob."""
        versions = self.copies.setdefault(blob.key, {})
        versions.setdefault(blob.version, []).append((worker, blob))


def gather(worker_urls: list[str], key: ClusterKey | None = None, timeout: float = 30.0) -> Found:
    """List every blob of every worker (each must be up, and all of one cluster), with a
    progress bar on a terminal (blobs listed, their bytes, and an ETA from the workers' own
    blob counts).  ``key``: the cluster secret's, which workers ask of a listing."""
    found = Found()
    now = int(time.time() * 1000)
    console = Console(stderr=True)
    columns = (
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[size]}"),
        TimeRemainingColumn(),
    )
    auth = HttpxClusterAuth(key) if key is not None else None
    with (
        httpx.Client(timeout=timeout, auth=auth) as http,
        Progress(*columns, console=console, disable=not console.is_terminal) as bar,
    ):
        healths = [
            http.get(f"{u.rstrip('/')}/health").raise_for_status().json() for u in worker_urls
        ]
        task = bar.add_task("listing", total=sum(h.get("key_count") or 0 for h in healths), size="")
        listed_bytes = 0
        for url, health in zip(worker_urls, healths, strict=False):
            url = url.rstrip("/")
            if health.get("role") != "worker" or health.get("index") is None:
                raise ValueError(f"{url} is not a registered kittenFS worker: {health}")
            if found.cluster not in (None, health.get("cluster")):
                raise ValueError(
                    f"{url} belongs to cluster {health.get('cluster')}, the "
                    f"workers before it to {found.cluster}"
                )
            found.cluster = health.get("cluster")
            found.workers.append(WorkerInfo(health["id"], health["index"], url, now))
            start = ""
            while True:
                page = http.get(f"{url}/blobs", params={"start": start, "limit": PAGE})
                body = page.raise_for_status().json()
                for raw in body["blobs"]:
                    blob = BlobListing.from_json(raw)
                    found.add(health["index"], blob)
                    listed_bytes += blob.size
                bar.update(task, advance=len(body["blobs"]), size=f"{listed_bytes:,} bytes")
                start = body["next"]
                if not start:
                    break
    return found


def plan(found: Found) -> tuple[list[IndexRecord], int]:
    """Return the live records, and how many copies are of other versions or disagree."""
    live: list[IndexRecord] = []
    stale = 0
    for key, versions in sorted(found.copies.items()):
        newest = max(versions)  # versions are time-ordered ids
        copies = versions[newest]
        # The copies that agree with the most common (size, md5) are the value.
        votes = Counter((blob.size, blob.md5) for _, blob in copies)
        size, md5 = votes.most_common(1)[0][0]
        agreeing = [(w, b) for w, b in copies if (b.size, b.md5) == (size, md5)]
        holders = tuple(sorted(w for w, _ in agreeing))
        created = min(b.created_ms for _, b in copies)
        meta = _meta_of([b for _, b in agreeing])
        live.append(IndexRecord(key, newest, size, md5, holders, created, created, meta))
        stale += sum(len(copies) for copies in versions.values()) - len(holders)
    return live, stale


def _meta_of(copies: list[BlobListing]) -> Meta:
    """Return the metadata most copies of one value hold, a copy with some outvoting any
    number without (copies written before workers kept metadata hold none)."""
    votes = Counter(blob.meta for blob in copies)
    return max(votes.items(), key=lambda vote: (bool(vote[0]), vote[1]))[0]


def rebuild(
    data: Path, worker_urls: list[str], key: ClusterKey | None = None, index: str = ""
) -> tuple[int, int]:
    """Write a new master index from the workers; return (keys, stale copies).

    ``index`` is where (``--index``: by default LevelDB under ``data``).  The index keeps
    the workers' cluster id, so they take the new master for theirs.  Refuses to touch an
    index that holds anything.
    """
    found = gather(worker_urls, key)
    live, stale = plan(found)
    data.mkdir(parents=True, exist_ok=True)
    if index and not index.startswith("leveldb:"):
        asyncio.run(_load(index, data, found.workers, live, found.cluster))
        return len(live), stale
    final = leveldb_path(index, data)
    if final.exists():
        raise FileExistsError(f"{final} exists; rebuild into an empty --data")
    building = final.with_name(final.name + ".rebuilding")
    shutil.rmtree(building, ignore_errors=True)  # a rebuild cut off earlier
    asyncio.run(_load(f"leveldb:{building}", data, found.workers, live, found.cluster))
    os.replace(building, final)
    return len(live), stale


async def _load(
    spec: str, data: Path, workers: list[WorkerInfo], live: list[IndexRecord], cluster: str | None
) -> None:
    """Load the empty index ``spec`` names (a PostgreSQL index loads in one transaction)."""
    index = await open_index(spec, data)
    try:
        if not await empty(index):
            raise FileExistsError(f"the index at {describe(spec, data)} is not empty")
        await index.load(live, workers, cluster)
    finally:
        await index.close()
