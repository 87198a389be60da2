"""Measure what auth costs: the same phases against a local cluster with auth off and one
with auth on (an admin token sent with every request), in interleaved rounds.

Prints JSON: per phase, the median over the rounds of the throughput (ops/s, or MB/s for
16 MiB values) and of the servers' CPU microseconds per operation, with auth off and on, and
the ratio on/off.  A whole `kittenfs bench` run is too noisy on a shared 2-core machine to
tell a few percent apart; interleaving rounds of the same phases is not.  See
docs/performance.md.  Run: python benchmarks/auth_cost.py [--rounds 3] [--json FILE]
"""

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from kittenfs.bench.load import Phase, run_phase
from kittenfs.bench.procstat import cpu_seconds
from kittenfs.cluster import LocalCluster, local_cluster

MiB = 1024 * 1024


def _keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}/{i:06d}" for i in range(count)]


def measure_phase(
    cluster: LocalCluster, operation: str, keys: list[str], concurrency: int, size: int
) -> dict[str, float]:
    """Run one phase; return its rate and the servers' CPU per operation."""
    pids = cluster.pids()
    before = {role: cpu_seconds(pid) for role, pid in pids.items()}
    result = run_phase(
        Phase(cluster.url, operation, keys, concurrency, size, headers=cluster.headers), 2
    )
    cpu = sum(cpu_seconds(pid) - before[role] for role, pid in pids.items())
    done = len(result.latencies)
    rate = result.bytes / result.wall / 1e6 if size >= MiB else done / result.wall
    return {"rate": rate, "cpu_us_op": cpu / max(done, 1) * 1e6, "errors": result.errors}


def one_round(auth: bool) -> dict[str, dict[str, float]]:
    """Run every phase once against a fresh cluster, with auth ``auth``."""
    with local_cluster(3, 3, auth=auth) as cluster:
        small, large = _keys("/cost/small", 3000), _keys("/cost/large", 16)
        figures = {
            "small PUT c16": measure_phase(cluster, "put", small, 16, 1024),
            "small GET c16": measure_phase(cluster, "get", small * 3, 16, 1024),
        }
        measure_phase(cluster, "put", large, 4, 16 * MiB)
        figures["large GET 16MiB c16"] = measure_phase(cluster, "get", large * 8, 16, 16 * MiB)
        figures["small DELETE c16"] = measure_phase(cluster, "delete", small, 16, 1024)
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the rounds and the summary to this file")
    args = parser.parse_args()
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for mode in ("off", "on"):
            rounds[mode].append(one_round(mode == "on"))
    summary: dict[str, Any] = {}
    for name in rounds["off"][0]:
        row: dict[str, Any] = {
            mode: {
                figure: round(statistics.median(r[name][figure] for r in rounds[mode]))
                for figure in ("rate", "cpu_us_op")
            }
            for mode in rounds
        }
        row["ratio_on_off"] = round(row["on"]["rate"] / row["off"]["rate"], 3)
        summary[name] = row
    report({"summary": summary, "rounds": rounds}, args.json)


def report(result: Any, path: str | None) -> None:
    """Print ``result`` as JSON, and write it to ``path`` too if one is given."""
    text = json.dumps(result, indent=1)
    print(text)
    if path:
        Path(path).write_text(text + "\n")


if __name__ == "__main__":
    main()
