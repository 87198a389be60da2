"""Where a small DELETE's CPU goes, process by process: 1 KiB values PUT, then DELETEd at
c16, against a local cluster (5 workers, 3 replicas, fsync on), with the CPU each server
process spent per DELETE and the load generator's.

Prints JSON: the DELETE rate and, per process, CPU microseconds per DELETE.  It is how the
floor of issue 12's DELETE target was measured (docs/performance.md); run it against a tree
whose ``Reaper.later`` returns at once to see the master's part without the copies'
deletion.  Run: python benchmarks/delete_cost.py [--keys 40000] [--json FILE]
"""

import argparse

from auth_cost import report

from kittenfs.bench.load import Phase, run_phase
from kittenfs.bench.procstat import cpu_seconds
from kittenfs.cluster import local_cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=40_000)
    parser.add_argument("--json", help="write the result to this file too")
    args = parser.parse_args()
    keys = [f"/delete-cost/{i:06d}" for i in range(args.keys)]
    with local_cluster(5, 3) as cluster:
        run_phase(Phase(cluster.url, "put", keys, 16, 1024, headers=cluster.headers), 2)
        pids = cluster.pids()
        before = {role: cpu_seconds(pid) for role, pid in pids.items()}
        result = run_phase(Phase(cluster.url, "delete", keys, 16, 1024, headers=cluster.headers), 2)
        done = max(len(result.latencies), 1)
        spent = {
            role: round((cpu_seconds(pid) - before[role]) / done * 1e6, 1)
            for role, pid in pids.items()
        }
    summary = {
        "deletes_per_s": round(len(result.latencies) / result.wall),
        "errors": result.errors,
        "cpu_us_per_delete": spent,
        "servers_cpu_us_per_delete": round(sum(spent.values()), 1),
        "load_generator_cpu_us_per_delete": round(result.client_cpu / done * 1e6, 1),
    }
    report(summary, args.json)


if __name__ == "__main__":
    main()
