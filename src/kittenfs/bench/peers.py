"""The Go stores as in-run peers (``--peer``): each runs for the whole bench, and the same
phases run against it as against kittenFS, in turn, for ratios that hold on a noisy machine.

A peer is two targets: its native HTTP API for the phases of kittenFS's own API (SeaweedFS's
filer: plain PUT, GET and DELETE of a path) and its S3 gateway for the S3 phases.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass

from . import seaweedfs
from .load import create_bucket
from .measure import Measured, Run

#: The bucket every target's S3 phases write to.
BUCKET = "kfs-bench"


@dataclass(frozen=True)
class PeerTargets:
    """A running peer as the bench's targets: its native API and its S3 gateway."""

    native: Measured
    s3: Measured


@contextmanager
def seaweedfs_peer(
    run: Run, generators: int, install: bool, keep: str | None
) -> Iterator[PeerTargets | None]:
    """Run a SeaweedFS peer and yield it as targets (None, with a note, if its binary is
    missing and cannot be installed)."""
    weed, why = seaweedfs.find_weed(install)
    if weed is None:
        run.notes.append(f"SeaweedFS peer skipped: {why}")
        yield None
        return
    with seaweedfs.seaweedfs(weed, keep) as peer:
        if not create_bucket(peer.s3_url, peer.credential, BUCKET):
            raise RuntimeError(f"SeaweedFS's S3 gateway did not create bucket {BUCKET}")
        run.notes.append(
            f"SeaweedFS peer: {seaweedfs.version(weed)} ({seaweedfs.PACKAGE}); a master, "
            f"{seaweedfs.VOLUMES} volume servers, a filer (leveldb2 store) and an S3 gateway, "
            f"each its own process; replication {seaweedfs.REPLICATION} (3 copies) and fsync "
            f"on for {' and '.join(seaweedfs.FSYNCED)} (fs.configure); the native phases "
            "PUT, GET and DELETE paths of its filer, the S3 phases go through its gateway "
            "(SigV4 checked, identity from a -config JSON)"
        )
        pids = peer.pids()
        yield PeerTargets(
            Measured(run, peer.filer_url, "seaweedfs", pids, generators),
            Measured(run, peer.s3_url, "seaweedfs", pids, generators, s3=peer.credential),
        )


#: The peers ``--peer`` may name: each a function (run, generators, install, keep) that
#: returns a context manager yielding the peer's targets, or None if it cannot run here.
PEERS: dict[str, Callable[[Run, int, bool, str | None], AbstractContextManager[PeerTargets | None]]]
PEERS = {"seaweedfs": seaweedfs_peer}


@contextmanager
def running(
    run: Run, names: list[str], generators: int, install: bool, keep: str | None
) -> Iterator[dict[str, PeerTargets]]:
    """Start every peer ``names`` asks for (once each); yield those that run, by name; stop
    them all (each process by PID) however the block ends."""
    with ExitStack() as stack:
        started: dict[str, PeerTargets] = {}
        for name in dict.fromkeys(names):
            targets = stack.enter_context(PEERS[name](run, generators, install, keep))
            if targets is not None:
                started[name] = targets
        yield started
