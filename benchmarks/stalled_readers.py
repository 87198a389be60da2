"""Measure what clients that never read cost the master: 300 of them ask for a 64 MiB value
streamed through it (``?direct``) and read nothing.

Prints JSON: the master's resident memory before, at its peak and after the clients have
gone, and its open descriptors over time (each client and each stream to a worker is one).
Issue 9 measured 50 -> 348 MiB, 300 connections still open past 40 s and ~300 MiB left
after; docs/performance.md has the figures since.  Run: python benchmarks/stalled_readers.py
"""

import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from kittenfs.cluster import local_cluster
from kittenfs.reliability.stalled import stalled_reader


def _rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmRSS")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as keep,
        local_cluster(3, 3, keep, ("--cache-bytes", "0")) as cluster,
    ):
        value = os.urandom(64 * 1024 * 1024)
        httpx.put(f"{cluster.url}/big", content=value, timeout=300).raise_for_status()
        pid = cluster.pids()["master"]
        time.sleep(11)  # one heap trim after the upload
        report: dict[str, object] = {"before": {"rss_mib": _rss_mib(pid), "fds": _fds(pid)}}
        with ThreadPoolExecutor(32) as pool:
            readers = list(
                pool.map(lambda _: stalled_reader(cluster.url, "/big?direct"), range(300))
            )
        samples = []
        started = time.monotonic()
        while time.monotonic() - started < 45:
            samples.append((round(time.monotonic() - started), _rss_mib(pid), _fds(pid)))
            time.sleep(1)
        for conn in readers:
            conn.close()
        time.sleep(12)
        report["peak_rss_mib"] = max(rss for _, rss, _ in samples)
        report["fds_after_s"] = {s: fds for s, _, fds in samples if s in (1, 10, 20, 30, 40)}
        report["after"] = {"rss_mib": _rss_mib(pid), "fds": _fds(pid)}
        got = httpx.get(f"{cluster.url}/big", params={"direct": ""}, timeout=300).content
        report["still_serves"] = got == value
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
