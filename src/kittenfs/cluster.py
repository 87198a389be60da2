"""``kittenfs up``: a whole local cluster, one master and N workers, as child processes.

Each process gets its own directory under the data directory (``master/``, ``worker-0/``,
...), so running ``up`` again with the same ``--data`` finds every worker and value again.
Ctrl-C or SIGTERM stops the children (SIGTERM, then SIGKILL after a grace period).
"""

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx

#: Seconds to wait for every process to answer /health.
START_TIMEOUT = 30.0
#: Seconds a child gets to stop after SIGTERM before it is killed.
STOP_GRACE = 10.0


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "kittenfs", *args])


def _wait_healthy(urls: list[str], master: str, workers: int,
                  children: list[subprocess.Popen[bytes]]) -> None:
    """Wait until every process answers /health and the master sees every worker up."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise RuntimeError("a process exited during start-up; see its log above")
        try:
            for url in urls:
                httpx.get(f"{url}/health", timeout=1.0).raise_for_status()
            cluster = httpx.get(f"{master}/_cluster", timeout=1.0).json()
            if sum(w["state"] == "up" for w in cluster["workers"]) >= workers:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the cluster was not healthy within {START_TIMEOUT:.0f} s")


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_local_cluster(data: Path, port: int, workers: int, replicas: int, verbose: bool) -> int:
    """Run a master and ``workers`` workers until Ctrl-C or SIGTERM; return the exit status."""
    if workers < 1:
        print("kittenfs up: --workers must be at least 1", file=sys.stderr)
        return 2
    if not 0 < port <= 65535 - workers:
        print(f"kittenfs up: --port {port}: the master and its {workers} workers need ports "
              f"{port}..{port + workers}, all between 1 and 65535", file=sys.stderr)
        return 2
    master = f"http://127.0.0.1:{port}"
    extra = ["--verbose"] if verbose else []
    children: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        children.append(_spawn("master", "--port", str(port), "--data", str(data / "master"),
                               "--replicas", str(replicas), *extra))
        urls = [master]
        _wait_healthy(urls, master, 0, children)
        for i in range(workers):  # one at a time, so that worker-i registers as index i
            worker_port = port + 1 + i
            children.append(_spawn("worker", "--master", master, "--port", str(worker_port),
                                   "--data", str(data / f"worker-{i}"), *extra))
            urls.append(f"http://127.0.0.1:{worker_port}")
            _wait_healthy(urls, master, i + 1, children)
        print(f"kittenFS is up: master {master}, {workers} workers, data in {data}", flush=True)
        print(f"  try: curl -X PUT -d 'hello' {master}/hello && curl -L {master}/hello",
              flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("kittenfs up: a process exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"kittenfs up: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop(children)
        print("kittenfs up: stopped", flush=True)
