"""``kittenfs soak``: the resource-bound soak.  A local cluster takes many small keys (a
million in the documented run), then a stream of large values, while every process's
resident memory and open descriptors are sampled; a sample of the keys is read back and
checked.  It prints JSON: throughput, errors, and each process's memory over the run, so
"flat" is a figure (docs/reliability.md)."""

import argparse
import asyncio
import hashlib
import json
import random
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from ..cluster import LocalCluster, local_cluster

MiB = 1024 * 1024
#: Seconds between two samples of every process's memory.
SAMPLE_EVERY = 1.0
#: What the sampler reads from /proc/<pid>/status, by the name the report gives it.
MEMORY_FIELDS = {"rss": "VmRSS", "anon": "RssAnon"}
#: Large values rotate over this many keys, so overwrites make garbage for the reaper.
LARGE_KEYS = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--small-keys",
        type=int,
        default=1_000_000,
        help="distinct small keys to write (default 1,000,000)",
    )
    parser.add_argument("--large", type=int, default=64, help="large values to write and read")
    parser.add_argument("--large-mib", type=int, default=64, help="size of a large value (MiB)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--check", type=int, default=2000, help="small keys read back at the end")
    parser.add_argument("--workers", type=int, default=3, help="workers of the local cluster")
    parser.add_argument("--json", help="write the report to this file as well")
    parser.add_argument("--keep", help="keep the cluster's data and log under this directory")


def small_value(i: int) -> bytes:
    """The value of small key ``i``: 100-999 bytes that name it (checkable without a copy)."""
    seed = hashlib.md5(str(i).encode(), usedforsecurity=False).digest()
    return (seed * 64)[: 100 + i * 7919 % 900]


def run_soak(args: argparse.Namespace) -> int:
    """Run the soak as ``args`` say, print the report; exit 0 if no request failed."""
    with local_cluster(args.workers, min(3, args.workers), args.keep) as cluster:
        sampler = Sampler(cluster)
        sampler.start()
        try:
            report = asyncio.run(_run(cluster, args, sampler))
        finally:
            sampler.stop()
        report["memory_mib"] = sampler.summary()
        report["open_files"] = {
            "start": sampler.files_at_start,
            "end": sampler.open_files_settled(),
        }
        report["index_mib"] = round(_tree_bytes(cluster.data / "master") / MiB, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    failed = report["small"]["errors"] + report["large"]["errors"] + report["check"]["wrong"]
    return 0 if failed == 0 else 1


async def _run(
    cluster: LocalCluster, args: argparse.Namespace, sampler: "Sampler"
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        sampler.enter("small")
        small = await _small(http, cluster.url, args.small_keys, args.concurrency)
        sampler.enter("large")
        large = await _large(http, cluster.url, args.large, args.large_mib * MiB)
        sampler.enter("check")
        check = await _check(http, cluster.url, args.small_keys, args.check)
    return {"small": small, "large": large, "check": check, "workers": args.workers}


async def _small(
    http: aiohttp.ClientSession, url: str, keys: int, concurrency: int
) -> dict[str, Any]:
    """PUT ``keys`` distinct small keys, ``concurrency`` at a time."""
    next_key, errors, started = 0, 0, time.monotonic()

    async def writer() -> None:
        nonlocal next_key, errors
        while next_key < keys:
            i, next_key = next_key, next_key + 1
            try:
                async with http.put(f"{url}/soak/{i}", data=small_value(i)) as resp:
                    await resp.read()
                    errors += resp.status != 201
            except (aiohttp.ClientError, TimeoutError):
                errors += 1

    await asyncio.gather(*(writer() for _ in range(concurrency)))
    seconds = time.monotonic() - started
    return {
        "keys": keys,
        "errors": errors,
        "seconds": round(seconds, 1),
        "puts_per_s": round(keys / seconds),
    }


async def _large(http: aiohttp.ClientSession, url: str, count: int, size: int) -> dict[str, Any]:
    """Write ``count`` large values over a few keys; read each back through the master
    (``?direct``, streamed) and checked."""
    errors, started = 0, time.monotonic()
    for n in range(count):
        key, seed = f"{url}/soak-large/{n % LARGE_KEYS}", n.to_bytes(4, "big")
        try:
            async with http.put(key, data=_pattern(seed, size)) as resp:
                await resp.read()
                errors += resp.status not in (201, 204)
            async with http.get(key, params={"direct": ""}) as resp:
                digest, got = hashlib.md5(usedforsecurity=False), 0
                async for chunk in resp.content.iter_chunked(MiB):
                    digest.update(chunk)
                    got += len(chunk)
            expected = hashlib.md5(usedforsecurity=False)
            async for chunk in _pattern(seed, size):
                expected.update(chunk)
            errors += got != size or digest.digest() != expected.digest()
        except (aiohttp.ClientError, TimeoutError):
            errors += 1
    seconds = time.monotonic() - started
    return {
        "values": count,
        "mib_each": size // MiB,
        "errors": errors,
        "seconds": round(seconds, 1),
        "mb_per_s_put_and_get": round(2 * count * size / seconds / 1e6),
    }


async def _pattern(seed: bytes, size: int) -> AsyncIterator[bytes]:
    """``size`` bytes, streamed a MiB at a time, different for each ``seed``."""
    block = (hashlib.sha256(seed).digest() * (MiB // 32))[:MiB]
    for offset in range(0, size, MiB):
        yield block[: min(MiB, size - offset)]


async def _check(http: aiohttp.ClientSession, url: str, keys: int, sample: int) -> dict[str, Any]:
    """Read back a random sample of the small keys; count any wrong or missing value."""
    wrong = 0
    for i in random.sample(range(keys), min(sample, keys)):
        async with http.get(f"{url}/soak/{i}") as resp:
            wrong += resp.status != 200 or await resp.read() != small_value(i)
    return {"read": min(sample, keys), "wrong": wrong}


class Sampler(threading.Thread):
    """Samples each process's resident memory (VmRSS) every second, tagged with the phase."""

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(daemon=True)
        self.pids = cluster.pids()
        self.phase = "start"
        self.samples: list[tuple[str, dict[str, float]]] = []
        self.files_at_start = self.open_files()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_EVERY):
            self._sample()

    def enter(self, phase: str) -> None:
        """End the current phase with a sample (so even a short one has one); begin ``phase``."""
        self._sample()
        self.phase = phase

    def _sample(self) -> None:
        self.samples.append(
            (
                self.phase,
                {
                    f"{name} {kind}": mib
                    for name, pid in self.pids.items()
                    for kind, mib in _memory_mib(pid).items()
                },
            )
        )

    def stop(self) -> None:
        self._done.set()
        self.join()

    def open_files(self) -> dict[str, int]:
        return {
            name: len(list(Path(f"/proc/{pid}/fd").iterdir())) for name, pid in self.pids.items()
        }

    def open_files_settled(self, within: float = 15.0) -> dict[str, int]:
        """Return the open descriptors once the client's connections, just closed, have been
        closed by the servers too (each back within 16 of its start, or after ``within``
        seconds): counted at once, a leak and a close still in flight look the same."""
        deadline = time.monotonic() + within
        while True:
            files = self.open_files()
            if time.monotonic() > deadline or all(
                files[name] <= self.files_at_start[name] + 16 for name in files
            ):
                return files
            time.sleep(0.2)

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per process, resident memory (``rss``) and its anonymous part (``anon``: the heap,
        without LevelDB's memory-mapped table files, which the kernel can drop at will): a
        tenth into, halfway through and at the end of the small phase, at the end of the
        large phase, and the peak over the run."""
        small = [s for phase, s in self.samples if phase == "small"] or [{}]
        large = [s for phase, s in self.samples if phase == "large"] or [{}]
        return {
            name: {
                kind: {
                    "small_10pct": _at(small, 0.1, f"{name} {kind}"),
                    "small_50pct": _at(small, 0.5, f"{name} {kind}"),
                    "small_end": _at(small, 1.0, f"{name} {kind}"),
                    "large_end": _at(large, 1.0, f"{name} {kind}"),
                    "peak": max(
                        (s.get(f"{name} {kind}", 0.0) for _, s in self.samples), default=0.0
                    ),
                }
                for kind in MEMORY_FIELDS
            }
            for name in self.pids
        }


def _at(series: list[dict[str, float]], fraction: float, name: str) -> float:
    return series[min(len(series) - 1, int(len(series) * fraction))].get(name, 0.0)


def _memory_mib(pid: int) -> dict[str, float]:
    """The process's resident memory and its anonymous part, in MiB (0 once it is gone)."""
    found = dict.fromkeys(MEMORY_FIELDS, 0.0)
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            field, _, value = line.partition(":")
            if field in MEMORY_FIELDS.values():
                kind = next(k for k, f in MEMORY_FIELDS.items() if f == field)
                found[kind] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return found


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
