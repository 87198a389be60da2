"""Measure what one sequential GET costs the master: a cached 1 KiB value, a redirect (302,
not followed: one index read) and a missing key (404: one index read), against `kittenfs up`.

Prints JSON: per kind, the latency median/p90/p99/max in microseconds over ``--count`` GETs on
one keep-alive connection, and the master's CPU microseconds per GET.  Run it twice (before
and after a change) on a quiet machine, or interleave: a shared 2-core machine is noisy.
Run: python benchmarks/get_cost.py [--count 2000] [--port 0] [--rounds 3]
"""

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kittenfs.bench.procstat import cpu_seconds

SMALL = 1024
LARGE = 100 * 1024  # over --cache-value-max: redirected


def _free_port(span: int) -> int:
    """Return a port p for which p .. p+span are free now."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + span < 65536 and all(_free(port + i) for i in range(1, span + 1)):
            return port


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _master_pid(port: int) -> int:
    """Return the pid of the master process listening on ``port``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"master" in argv and str(port).encode() in argv:
            return int(entry.name)
    raise RuntimeError("master not found")


def _wait_up(port: int, workers: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/_cluster")
            body = json.loads(conn.getresponse().read())
            if sum(1 for w in body.get("workers", []) if w.get("state") == "up") >= workers:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError("cluster did not come up")


def _kind(conn: http.client.HTTPConnection, pid: int, path: str, count: int) -> dict[str, Any]:
    """GET ``path`` ``count`` times; return latency percentiles and master CPU per GET."""
    latencies = []
    cpu = cpu_seconds(pid)
    status = 0
    for _ in range(count):
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - start) * 1e6)
        status = response.status
    cpu = cpu_seconds(pid) - cpu
    latencies.sort()
    return {
        "status": status,
        "p50_us": round(statistics.median(latencies)),
        "p90_us": round(latencies[int(count * 0.9)]),
        "p99_us": round(latencies[int(count * 0.99)]),
        "max_us": round(latencies[-1]),
        "master_cpu_us": round(cpu / count * 1e6, 1),
    }


def one_round(count: int, port: int) -> dict[str, Any]:
    """Start a 3-worker cluster, write two values, time GETs of each kind."""
    port = port or _free_port(3)
    with tempfile.TemporaryDirectory() as data:
        up = subprocess.Popen(
            [sys.executable, "-m", "kittenfs", "up", "--port", str(port), "--data", data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait_up(port, 3)
            pid = _master_pid(port)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for path, size in (("/bench/small", SMALL), ("/bench/large", LARGE)):
                conn.request("PUT", path, body=os.urandom(size))
                conn.getresponse().read()
            for path in ("/bench/small", "/bench/large", "/bench/missing"):
                _kind(conn, pid, path, 200)  # warm up
            return {
                "cached GET 1KiB": _kind(conn, pid, "/bench/small", count),
                "redirect GET 100KiB": _kind(conn, pid, "/bench/large", count),
                "missing GET": _kind(conn, pid, "/bench/missing", count),
            }
        finally:
            os.killpg(up.pid, signal.SIGTERM)
            up.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--port", type=int, default=0, help="master port (0: a free one)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rounds = [one_round(args.count, args.port) for _ in range(args.rounds)]
    print(json.dumps(rounds, indent=1))


if __name__ == "__main__":
    main()
