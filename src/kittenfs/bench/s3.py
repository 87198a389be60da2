"""The S3 scenarios: 1 KiB PutObject and GetObject, large multipart uploads read back.

They run against kittenFS's S3 API (a local cluster of its own, with auth on, so that every
signature is checked) and against each peer's S3 gateway (``--peer seaweedfs``, peers.py),
phase by phase in turn, so that a noisy machine slows every target's phase alike.  Ratios
put kittenFS's figures beside each peer's.
"""

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..client import Client
from ..cluster import local_cluster
from .load import S3Credential, create_bucket
from .measure import GET_REPEAT, InTurn, Measured, MiB, Run
from .peers import BUCKET

SMALL_CONCURRENCY = 16
LARGE_CONCURRENCY = 4


@dataclass(frozen=True)
class S3Sizes:
    """How much work the S3 phases do; --quick shrinks everything."""

    small: int  # 1 KiB objects put (each then read GET_REPEAT times)
    large: int  # large objects uploaded in parts
    large_gets: int  # GETs of them
    large_size: int
    part_size: int


FULL = S3Sizes(4000, 8, 16, 64 * MiB, 8 * MiB)
QUICK = S3Sizes(64, 2, 4, 10 * MiB, 5 * MiB)


@dataclass(frozen=True)
class Step:
    """One phase, run against every target in turn."""

    name: str
    operation: str
    keys: list[str]
    concurrency: int
    value_size: int
    record: bool = True


def _keys(prefix: str, count: int) -> list[str]:
    return [f"/{BUCKET}/{prefix}/{i:07d}" for i in range(count)]


def names(sizes: S3Sizes) -> dict[str, str]:
    """Return the phase name of each S3 figure."""
    mib = sizes.large_size // MiB
    return {
        "small_put": f"S3 small PUT c{SMALL_CONCURRENCY}",
        "small_get": f"S3 small GET c{SMALL_CONCURRENCY}",
        "large_put": f"S3 large PUT {mib}MiB multipart c{LARGE_CONCURRENCY}",
        "large_get": f"S3 large GET {mib}MiB c{LARGE_CONCURRENCY}",
    }


def steps(sizes: S3Sizes) -> list[Step]:
    """Return the S3 phases in order (a warm-up first, so no target's first phase pays for
    making its volumes or opening its connections)."""
    name = names(sizes)
    small, large = _keys("small", sizes.small), _keys("large", sizes.large)
    gets = (large * (sizes.large_gets // len(large) + 1))[: sizes.large_gets]
    return [
        Step("S3 warm-up", "s3put", _keys("warm", 32), SMALL_CONCURRENCY, 1024, record=False),
        Step(name["small_put"], "s3put", small, SMALL_CONCURRENCY, 1024),
        Step(name["small_get"], "s3get", small * GET_REPEAT, SMALL_CONCURRENCY, 1024),
        Step(name["large_put"], "s3multipart", large, LARGE_CONCURRENCY, sizes.large_size),
        Step(name["large_get"], "s3get", gets, LARGE_CONCURRENCY, sizes.large_size),
    ]


def run_steps(targets: InTurn, sizes: S3Sizes) -> None:
    """Run every step against every target, in turn."""
    for step in steps(sizes):
        targets.phase(
            step.name,
            step.operation,
            step.keys,
            step.concurrency,
            step.value_size,
            record=step.record,
            part_size=sizes.part_size,
        )


@contextmanager
def kittenfs_target(
    run: Run, generators: int, workers: int, replicas: int, keep: str | None, cache_bytes: int
) -> Iterator[Measured]:
    """Run a local cluster whose master serves S3 with auth on; yield it as a target with an
    admin key of its own and the bench's bucket made."""
    extra = ("--cache-bytes", str(cache_bytes))
    with local_cluster(workers, replicas, keep, extra, auth=True, s3=True) as cluster:
        assert cluster.s3_url is not None
        with Client(cluster.url, token=cluster.token) as admin:
            made = admin.create_key("admin")
        credential = S3Credential(made["access_key"], made["secret_key"])
        if not create_bucket(cluster.s3_url, credential, BUCKET):
            raise RuntimeError(f"kittenFS's S3 API did not create bucket {BUCKET}")
        yield Measured(run, cluster.s3_url, "kittenfs", cluster.pids(), generators, s3=credential)


def bench_s3(
    run: Run, sizes: S3Sizes, args: argparse.Namespace, peers: Sequence[Measured] = ()
) -> None:
    """Start kittenFS's S3 target, then run the S3 phases against it and every running
    ``peers``' S3 gateway in turn; stop the cluster (each process by PID) however it ends."""
    ours = kittenfs_target(
        run, args.processes, args.workers, args.replicas, args.keep, args.cache_bytes
    )
    with ours as target:
        run.notes.append(
            "S3 phases: kittenFS's on a second local cluster of the same shape with auth on "
            "(signed with an admin key of its own); requests signed with UNSIGNED-PAYLOAD"
        )
        run_steps(InTurn([target, *peers]), sizes)


def ratios(run: Run, sizes: S3Sizes, peers: list[str]) -> dict[str, dict[str, Any]]:
    """Return kittenFS's S3 figures as ratios to each peer's (None where either is missing)."""
    by_name = {(p["target"], p["name"]): p for p in run.phases}
    named = names(sizes)
    out: dict[str, dict[str, Any]] = {}
    for peer in peers:
        for figure, name in named.items():
            unit = "ops_s" if figure.startswith("small") else "mb_s"
            ours, theirs = by_name.get(("kittenfs", name)), by_name.get((peer, name))
            value = (
                None
                if ours is None or not theirs or not theirs[unit]
                else ours[unit] / theirs[unit]
            )
            out[f"s3_{figure}_vs_{peer}"] = {"value": value, "target": None, "met": None}
    return out
