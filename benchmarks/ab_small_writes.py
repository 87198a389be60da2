"""A/B of small operations between two source trees: 1 KiB PUT, GET (each key read twice)
and DELETE at c16 against a local cluster (5 workers, 3 replicas, fsync on) started from
tree A, then from tree B, in interleaved rounds, with the servers' CPU per operation.
With ``--large``: 16 MiB GETs at c16 instead (16 values, each read 16 times; MB/s).

For a change to the write path, A is a worktree of the commit before it
(``git worktree add /tmp/before HEAD~1``) and B this tree.  Prints JSON: per figure, each
round's values and the median, and the ratio B/A.  See docs/performance.md.
Run: python benchmarks/ab_small_writes.py --a /tmp/before [--b .] [--rounds 2] [--large]
[--json FILE]
"""

import argparse
import os
import statistics
from pathlib import Path
from typing import Any

from auth_cost import MiB, measure_phase, report

from kittenfs.cluster import local_cluster

#: Keys per phase: past the reaper's queue (garbage.LATER_QUEUE), so that a DELETE phase
#: measures the rate deletes can be sustained at, not how fast they queue.
KEYS = 10_000


def one_round(tree: Path, large: bool) -> dict[str, dict[str, float]]:
    """Run the phases once against a fresh cluster of ``tree``'s code."""
    os.environ["PYTHONPATH"] = str(tree / "src")  # the cluster's processes import this tree
    if large:
        values = [f"/ab/large/{i}" for i in range(16)]
        with local_cluster(5, 3) as cluster:
            measure_phase(cluster, "put", values, 4, 16 * MiB)
            return {"large GET 16MiB c16": measure_phase(cluster, "get", values * 16, 16, 16 * MiB)}
    keys = [f"/ab/{i:06d}" for i in range(KEYS)]
    with local_cluster(5, 3) as cluster:
        return {
            "small PUT c16": measure_phase(cluster, "put", keys, 16, 1024),
            "small GET c16": measure_phase(cluster, "get", keys * 2, 16, 1024),
            "small DELETE c16": measure_phase(cluster, "delete", keys, 16, 1024),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a", type=Path, required=True, help="tree A (before)")
    parser.add_argument("--b", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--large", action="store_true", help="16 MiB GETs instead")
    parser.add_argument("--json", help="write the result to this file too")
    args = parser.parse_args()
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {"a": [], "b": []}
    for _ in range(args.rounds):
        for side in ("a", "b"):
            rounds[side].append(one_round(getattr(args, side).resolve(), args.large))
    summary: dict[str, Any] = {}
    for name in rounds["a"][0]:
        row: dict[str, Any] = {
            side: {
                figure: [round(r[name][figure]) for r in rounds[side]]
                + [round(statistics.median(r[name][figure] for r in rounds[side]))]
                for figure in ("rate", "cpu_us_op")
            }
            for side in rounds
        }
        row["ratio_b_a"] = round(row["b"]["rate"][-1] / row["a"]["rate"][-1], 3)
        summary[name] = row
    report({"a": str(args.a), "b": str(args.b), "summary": summary}, args.json)


if __name__ == "__main__":
    main()
