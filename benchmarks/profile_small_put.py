"""Profile a small-PUT load: py-spy samples the master and one worker of a local cluster
(5 workers, 3 replicas) while 16 clients PUT 1 KiB values, then prints where the master's
event loop spends its time.  See docs/performance.md ("where a small PUT's time goes").

py-spy is not a dependency: install it where you like (``pip install py-spy``) and name it.
Run: python benchmarks/profile_small_put.py --py-spy PATH [--seconds 20] [--out PREFIX]
Writes PREFIX.master.txt and PREFIX.worker.txt (collapsed stacks, py-spy's raw format).
"""

import argparse
import asyncio
import collections
import subprocess
import time
from pathlib import Path

import aiohttp

from kittenfs.cluster import local_cluster

#: What the master's main thread does, by the frames that mark it (a sample counts for every
#: group one of its frames belongs to).
GROUPS = {
    "waiting in epoll (idle)": ("EpollSelector.select",),
    "socket sends (responses, batches to workers)": ("_SelectorSocketTransport.write",),
    "socket reads and HTTP parsing": ("_read_ready__data_received", "data_received"),
    "the handler chain (middlewares, dispatch, Store.put)": ("RequestHandler._handle_request",),
    "Store.put (locks, index reads, the batcher's futures)": ("Store.put",),
    "writing responses": ("RequestHandler.finish_response",),
    "the batcher's requests to the workers": ("Batcher._send",),
}


async def _load(url: str, seconds: float, clients: int = 16) -> float:
    """PUT fresh 1 KiB keys from ``clients`` clients for ``seconds``; return ops/s."""
    done = 0
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def client(number: int) -> None:
            nonlocal done
            while time.monotonic() < end:
                async with session.put(f"{url}/p/{number}/{done}", data=b"x" * 1024) as answer:
                    await answer.read()
                done += 1

        await asyncio.gather(*(client(i) for i in range(clients)))
    return done / seconds


def main_thread(stacks: Path) -> dict[str, float]:
    """Return each group's share of the master's main-thread samples."""
    shares: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "_run_module_as_main" not in stack:
            continue  # another thread (LevelDB's commit thread waits in fsync)
        total += int(count)
        for group, marks in GROUPS.items():
            if any(mark in stack for mark in marks):
                shares[group] += int(count)
    return {group: round(shares[group] / max(total, 1), 3) for group in GROUPS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--py-spy", required=True, help="the py-spy binary")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", default="small-put", help="prefix of the stack files")
    args = parser.parse_args()
    with local_cluster(5, 3) as cluster:
        pids = cluster.pids()
        sampled = {"master": pids["master"], "worker": pids["worker-0"]}
        spies = [
            subprocess.Popen(
                [args.py_spy, "record", "-p", str(pid), "-d", str(int(args.seconds)),
                 "-r", "200", "-f", "raw", "--nonblocking", "-o", f"{args.out}.{name}.txt"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in sampled.items()
        ]  # fmt: skip
        rate = asyncio.run(_load(cluster.url, args.seconds))
        for spy in spies:
            spy.wait()
    shares = main_thread(Path(f"{args.out}.master.txt"))
    print({"put_ops_s": round(rate), "master_main_thread": shares})


if __name__ == "__main__":
    main()
