"""``kittenfs nemesis``: run the workload (native, or S3 with ``--workload s3``) against a
local cluster while the nemesis injects faults, heal, repair, then check the history and print
the figures (docs/reliability.md)."""

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import aiohttp

from ..cluster import LocalCluster, free_port_block, local_cluster
from ..localetcd import LocalEtcd, temporary_etcd
from ..localpg import temporary_postgres
from . import attacks, network
from .checker import VIOLATIONS, check
from .history import Op
from .nemesis import ETCD_FAULTS, FAULTS, MASTERS_FAULTS, NETWORK_FAULTS, Nemesis
from .s3load import BUCKET, S3Endpoint, S3Load, prepare, run_s3_clients, settle
from .workload import native_final_reads, run_clients

#: Seconds the cluster gets to be whole again (every key fully replicated) after the faults.
REPLICATION_DEADLINE = 120.0
#: The master's --s3-abandoned-after under the S3 workload: short, so that its cleaner runs
#: during the run and ends, before the final reads, every upload that a fault left open.
S3_ABANDONED_AFTER = 15.0
#: The faults that kill -9 a process (the S3 summary counts those that hit a multipart
#: upload in flight).
KILLS = ("kill_master", "kill_worker", "lose_metadata")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=30, help="seconds of workload")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--keys", type=int, default=40, help="size of the key set")
    parser.add_argument("--workers", type=int, default=4, help="workers of the local cluster")
    parser.add_argument(
        "--workload",
        choices=("native", "s3"),
        default="native",
        help="the clients' API: native, or S3 on the master's S3 port (PutObject, multipart "
        "uploads, GetObject, DeleteObject, signed)",
    )
    parser.add_argument(
        "--multipart-mib",
        type=int,
        default=256,
        help="with --workload s3: MiB of multipart objects to upload, spread over the run",
    )
    parser.add_argument("--faults", type=int, default=12, help="most faults to inject")
    parser.add_argument(
        "--only", choices=FAULTS, action="append", help="inject only these faults (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    parser.add_argument("--json", help="write the summary to this file as well")
    parser.add_argument("--history", help="write every operation to this file (JSON lines)")
    parser.add_argument("--keep", help="keep the cluster's data and log under this directory")
    parser.add_argument(
        "--index",
        choices=("leveldb", "postgres", "etcd"),
        default="leveldb",
        help="where the index lives: the master's LevelDB, or a local PostgreSQL or a local "
        "3-member etcd shared by --masters masters (on 127.0.0.1: no network faults)",
    )
    parser.add_argument(
        "--masters",
        type=int,
        default=0,
        help="masters sharing the index (default: 1, or 2 with --index postgres or etcd)",
    )
    parser.add_argument(
        "--loopback",
        action="store_true",
        help="run every process on 127.0.0.1, not on hosts of their own "
        "(network namespaces, the default as root); no cut_worker then",
    )


def run_nemesis(args: argparse.Namespace) -> int:
    """Run the suite as ``args`` say; print the summary; exit 0 only if nothing was violated."""
    seed = args.seed if args.seed is not None else int(time.time())
    shared = args.index != "leveldb"
    masters = args.masters or (2 if shared else 1)
    if masters > 1 and not shared:
        print("kittenfs nemesis: several masters need --index postgres or etcd", file=sys.stderr)
        return 2
    why_not = (
        "--loopback"
        if args.loopback
        else "a shared index runs on 127.0.0.1"
        if shared
        else network.unavailable()
    )
    cannot = {
        **dict.fromkeys(NETWORK_FAULTS, why_not),
        **dict.fromkeys(MASTERS_FAULTS, None if masters > 1 else "one master"),
        **dict.fromkeys(ETCD_FAULTS, None if args.index == "etcd" else "no etcd"),
    }
    faults = tuple(f for f in args.only or FAULTS if not cannot.get(f))
    if not faults:
        why = "; ".join(sorted({str(cannot[f]) for f in args.only}))
        print(f"kittenfs nemesis: {', '.join(args.only)} cannot run here: {why}", file=sys.stderr)
        return 2
    s3 = args.workload == "s3"
    with (
        shared_index(args.index) as (index, etcd),
        local_cluster(
            args.workers,
            3,
            args.keep,
            master_extra=("--s3-abandoned-after", str(S3_ABANDONED_AFTER)) if s3 else (),
            hosts=why_not is None,
            s3=s3,
            index=index,
            masters=masters,
        ) as cluster,
    ):
        summary = asyncio.run(_run(cluster, args, seed, faults, etcd))
    summary["hosts"] = (
        "a network namespace per process"
        if why_not is None
        else f"all on 127.0.0.1 ({why_not}: no network faults)"
    )
    summary["index"] = {"engine": args.index, "masters": masters}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")
    return 0 if summary["passed"] else 1


@contextmanager
def shared_index(engine: str) -> Iterator[tuple[str, LocalEtcd | None]]:
    """Yield the ``--index`` of a new index on ``engine`` ("" for LevelDB), on a server of
    the run's own (PostgreSQL, or a 3-member etcd, stopped and removed at the end), and the
    etcd cluster if it is one."""
    with ExitStack() as stack:
        if engine == "postgres":
            server = stack.enter_context(temporary_postgres(free_port_block(1)))
            yield server.create_database("kittenfs"), None
        elif engine == "etcd":
            etcd = stack.enter_context(temporary_etcd(3))
            yield etcd.url(), etcd
        else:
            yield "", None


async def _run(
    cluster: LocalCluster,
    args: argparse.Namespace,
    seed: int,
    faults: tuple[str, ...],
    etcd: LocalEtcd | None = None,
) -> dict[str, Any]:
    rng = random.Random(seed)
    nemesis = Nemesis(cluster, rng, faults, etcd)
    endpoint = await _s3_endpoint(cluster) if args.workload == "s3" else None
    started = time.monotonic()
    if endpoint is None:
        clients = run_clients(
            cluster.master_urls, args.clients, args.keys, args.duration, seed, cluster.headers
        )
        history, _ = await asyncio.gather(clients, nemesis.run(args.duration, args.faults))
    else:
        s3_clients = run_s3_clients(
            endpoint, args.clients, args.keys, args.duration, seed, args.multipart_mib << 20
        )
        (history, load), _ = await asyncio.gather(
            s3_clients, nemesis.run(args.duration, args.faults)
        )
    healed = time.monotonic()
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), headers=cluster.headers
    ) as http:
        await _wait_workers(http, cluster)
        repair = await _repair(http, cluster.master_urls)
        replicated = await _replicated(http, cluster.url, healed)
    if endpoint is None:
        final = await native_final_reads(cluster.url, args.keys, cluster.headers)
    else:
        deadline = time.monotonic() + S3_ABANDONED_AFTER + 30
        uploads_left, final = await settle(endpoint, args.keys, deadline)
    verdict = check(history, final)
    if args.history:
        await asyncio.to_thread(_write_history, args.history, [*history, *final], started)
    injected = Counter(fault["fault"] for fault in nemesis.log)
    lost = verdict.violations["lost_writes"]
    refused = all(attacks.refused(result) for result in nemesis.attacks)
    summary = {
        "seed": seed,
        "workload": args.workload,
        "duration_s": round(healed - started, 1),
        "clients": args.clients,
        "keys": args.keys,
        "workers": args.workers,
        "ops": dict(sorted(verdict.ops.items())),
        "faults": dict(sorted(injected.items())),
        "fault_log": [{**f, "at": round(f["at"] - started, 2)} for f in nemesis.log],
        "acknowledged_writes_lost": lost,
        "stale_or_resurrected_reads": verdict.violations["stale_reads"]
        + verdict.violations["resurrected"],
        "wrong_bytes_read": verdict.violations["phantom"]
        + verdict.violations["failed_write_visible"]
        + verdict.violations["wrong_etag"],
        "partial_or_unreadable": verdict.violations["partial"] + verdict.violations["unreadable"],
        "attacks": {
            "sent": len(nemesis.attacks),
            "all_refused": refused,
            "last": nemesis.attacks[-1] if nemesis.attacks else None,
        },
        "violations": {k: verdict.violations[k] for k in VIOLATIONS},
        "examples": verdict.examples,
        "repair": {k: repair.get(k) for k in ("state", "found", "fixed", "errors")},
        "seconds_to_full_replication": replicated,
        "passed": not any(verdict.violations.values()) and replicated is not None and refused,
    }
    if endpoint is not None:
        summary["s3"] = _s3_figures(verdict.ops, nemesis.log, load, uploads_left)
        summary["passed"] = summary["passed"] and uploads_left == 0
    return summary


async def _s3_endpoint(cluster: LocalCluster) -> S3Endpoint:
    """Return the cluster's S3 API, with a fresh credential (write, on the workload's bucket)
    when auth is on, once the bucket is made."""
    assert cluster.s3_url is not None, "the cluster was started without s3"
    endpoint = S3Endpoint(cluster.s3_url)
    if cluster.token is not None:
        async with (
            aiohttp.ClientSession(headers=cluster.headers) as http,
            http.post(
                f"{cluster.url}/_keys", json={"role": "write", "prefix": f"/{BUCKET}/"}
            ) as resp,
        ):
            resp.raise_for_status()
            made = await resp.json()
        endpoint = S3Endpoint(cluster.s3_url, made["access_key"], made["secret_key"])
    await prepare(endpoint, time.monotonic() + 60)
    return endpoint


def _s3_figures(
    ops: Counter[str], log: list[dict[str, Any]], load: S3Load, uploads_left: int
) -> dict[str, Any]:
    """The S3 run's own figures: objects acknowledged, uploads, and kills during uploads."""
    hit = Counter(
        fault["fault"]
        for fault in log
        if fault["fault"] in KILLS and any(s <= fault["at"] <= e for s, e in load.uploads)
    )
    return {
        "acknowledged_objects": ops["put ok"] + ops["complete ok"],
        "multipart_uploads": len(load.uploads),
        "multipart_completed": ops["complete ok"],
        "multipart_aborted": ops["abort ok"],
        "multipart_mib": round(load.uploaded / 2**20),
        "kills": sum(fault["fault"] in KILLS for fault in log),
        "kills_during_multipart": dict(sorted(hit.items())),
        "uploads_left_after_cleaner": uploads_left,
    }


def _write_history(path: str, ops: list[Op], started: float) -> None:
    """Write every operation as a JSON line, with times in seconds from the start."""
    with open(path, "w") as out:
        out.writelines(
            json.dumps(
                {
                    **op.as_dict(),
                    "start": round(op.start - started, 4),
                    "end": round(op.end - started, 4),
                }
            )
            + "\n"
            for op in ops
        )


async def _wait_workers(http: aiohttp.ClientSession, cluster: LocalCluster) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{cluster.url}/_cluster") as resp:
                workers = (await resp.json())["workers"]
            if sum(w["state"] == "up" for w in workers) >= cluster.workers:
                return
        except (aiohttp.ClientError, OSError, ValueError):
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("the workers did not all come back up within 60 s")


async def _repair(http: aiohttp.ClientSession, urls: list[str]) -> dict[str, Any]:
    """Run a repair job to its end on the master that takes it (the one holding the
    cluster's duties), waiting for any job that is running first."""
    while True:
        for url in urls:
            async with http.post(f"{url}/_jobs/repair") as resp:
                job: dict[str, Any] = await resp.json()
                if resp.status == 202:
                    break
        else:
            await asyncio.sleep(1)
            continue
        break
    while job["state"] == "running":
        await asyncio.sleep(0.5)
        async with http.get(f"{url}/_jobs/{job['id']}") as resp:
            job = await resp.json()
    return job


async def _replicated(http: aiohttp.ClientSession, url: str, since: float) -> float | None:
    """Return the seconds from ``since`` until no key is under-replicated or misplaced."""
    while time.monotonic() - since < REPLICATION_DEADLINE:
        async with http.get(f"{url}/_cluster", params={"keys": "1"}) as resp:
            keys = (await resp.json())["keys"]
        if keys["under_replicated"] == 0 and keys["misplaced"] == 0:
            return round(time.monotonic() - since, 2)
        await asyncio.sleep(0.5)
    return None
