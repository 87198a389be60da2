"""A real kittenFS cluster for tests: master and worker processes on 127.0.0.1.

Every process is started with ``python -m kittenfs`` on port 0 (the kernel picks a free one;
the process logs the URL it bound), with its own temp data directory and log file.  Every
process started is killed by PID at teardown.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from kittenfs.clusterauth import HttpxClusterAuth
from kittenfs.localca import local_ca
from kittenfs.placement import blob_relpath
from kittenfs.signing import HEADER, ClusterKey
from kittenfs.tls import client_context

LISTENING = re.compile(r"listening on (https?://[^\s\"]+)")


def run_reporting(
    report: Path, *args: str, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run ``kittenfs ARGS --json REPORT`` (nemesis, soak); return the finished process and
    the report it wrote (empty if it wrote none)."""
    done = subprocess.run(
        [sys.executable, "-m", "kittenfs", *args, "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done, json.loads(report.read_text()) if report.exists() else {}


def run_kittenfs(
    *args: str, timeout: float = 120.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kittenfs`` with ``args`` to its end (``env`` added to this process's
    environment); return its exit status and what it printed, as text."""
    return subprocess.run(
        [sys.executable, "-m", "kittenfs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Wait until ``condition()`` is true, checking every 0.1 s; fail naming ``what`` after
    ``timeout`` seconds (generous: a loaded machine is slow, never wrong)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.1)


@dataclass
class Proc:
    """One kittenFS process: how to start it, and the running instance."""

    name: str
    args: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    url: str = ""
    port: int = 0

    def start(self, timeout: float = 60.0) -> None:
        """Start the process (on its earlier port if it had one) and wait for its URL (most
        of that wait is Python importing kittenfs: a second, several on a loaded machine)."""
        args = list(self.args)
        if self.port:
            args[args.index("--port") + 1] = str(self.port)
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "kittenfs", *args], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            match = LISTENING.search(text)
            if match:
                self.url = match.group(1)
                self.port = int(self.url.rsplit(":", 1)[1])
                return
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{text}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start within {timeout} s:\n{self.log.read_text()}")

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (kill -9 by default) and, unless it pauses the process, reap it."""
        if self.alive():
            assert self.popen is not None
            os.kill(self.popen.pid, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.popen.wait(timeout=30)

    def stop(self) -> None:
        """Stop cleanly with SIGTERM; kill -9 if that takes too long."""
        self.terminate()
        self.reap()

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM, after a SIGCONT should it be paused)."""
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGCONT)
            self.popen.terminate()

    def reap(self, timeout: float = 30.0) -> None:
        """Wait for a terminated process to end; kill -9 it if it takes over ``timeout``."""
        if self.popen is None:
            return
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def rss_peak_kib(self) -> int:
        """Return the process's peak resident set size (VmHWM) in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")


@dataclass
class Cluster:
    """A master and ``workers`` workers, each with a temp data directory under ``root``,
    sharing a cluster secret (``secret=False``: none, a loopback-only cluster)."""

    root: Path
    workers: int = 3
    replicas: int = 3
    master_args: list[str] = field(default_factory=list)
    worker_args: list[str] = field(default_factory=list)
    secret: bool = True
    #: An admin token for the master (auth on); the helpers below send it.
    token: str | None = None
    #: Serve HTTPS, with certificates from a local CA made under ``root/tls``.
    tls: bool = False
    #: The master's index: "" for LevelDB in its data directory, "postgresql" for a new
    #: database on this test process's PostgreSQL (pgserver.py), "etcd" for a new prefix on
    #: this test process's etcd (etcdserver.py), or an ``--index`` URL.  By default
    #: $KFS_TEST_INDEX, so that the whole suite can run on either.
    index: str = field(default_factory=lambda: os.environ.get("KFS_TEST_INDEX", ""))
    #: Masters on the one index (more than one: PostgreSQL's, or etcd's); ``master`` is the first,
    #: ``others`` the rest, each with a data directory of its own and the first's key.
    masters: int = 1
    master: Proc = field(init=False)
    others: list[Proc] = field(init=False, default_factory=list)
    nodes: list[Proc] = field(init=False, default_factory=list)
    key: ClusterKey | None = field(init=False, default=None)
    ca: Path | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shared: list[str] = []
        if self.tls:
            files = local_ca(self.root / "tls")
            self.ca = files.ca
            shared = [
                "--tls-cert",
                str(files.cert),
                "--tls-key",
                str(files.key),
                "--ca",
                str(files.ca),
            ]
        if self.secret:
            secret_file = self.root / "cluster.secret"
            secret_file.write_text(os.urandom(24).hex() + "\n")
            self.key = ClusterKey.from_text(secret_file.read_text())
            shared = [*shared, "--cluster-secret-file", str(secret_file)]
        # Beats every 0.5 s, down after 4 s without one: a worker is seen down soon after
        # it stops, but not while a loaded machine delays its beats (at 1 s and 2 s, beats
        # late by a second flipped workers down mid-test, and writes went elsewhere).
        self.worker_args = [*shared, "--heartbeat-interval", "0.5", *self.worker_args]
        shared_master = [*shared, "--admin-token", self.token] if self.token is not None else shared
        if self.masters > 1 and not self.index:
            self.index = "postgresql"
        if self.index == "postgresql":
            from pgserver import required_server

            self.index = required_server().database()
        if self.index == "etcd":
            from etcdserver import required_etcd

            self.index = required_etcd().index()
        if self.index:
            shared_master = [*shared_master, "--index", self.index]
        self.master, *self.others = (
            Proc(
                name,
                [
                    "master",
                    "--port",
                    "0",
                    "--data",
                    str(self.root / name),
                    "--replicas",
                    str(self.replicas),
                    "--down-after",
                    "4",
                    *shared_master,
                    *self.master_args,
                ],
                self.root / f"{name}.log",
            )
            for name in ["master", *(f"master-{j}" for j in range(1, self.masters))]
        )

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx checks the cluster's certificates against."""
        return client_context(self.ca) if self.ca else True

    @property
    def headers(self) -> dict[str, str]:
        """The admin credential's header (none when auth is off)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def auth(self) -> HttpxClusterAuth | None:
        """httpx auth that signs requests as a member of the cluster (for worker routes)."""
        return HttpxClusterAuth(self.key) if self.key is not None else None

    def signed(self, method: str, target: str) -> dict[str, str]:
        """Return the header that signs a raw request as a member of the cluster."""
        if self.key is None:
            return {}
        return {HEADER: self.key.sign_request(method, target, time.time())}

    @property
    def url(self) -> str:
        return self.master.url

    def start(self) -> Cluster:
        """Start the masters, then the workers, and wait until the master sees all of them up."""
        self.master.start()
        for other in self.others:
            # The master key never goes into the index: every master is given the first's.
            data = self.root / other.name
            data.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.root / "master" / "master.key", data / "master.key")
            other.start()
        for i in range(self.workers):
            # One after the other, each registered before the next starts: the master
            # numbers workers as they register, and tests count on nodes[i] being worker i.
            self.add_worker()
            self.wait_workers_up(i + 1)
        return self

    def add_worker(self, *extra: str) -> Proc:
        """Start one more worker with a fresh data directory (and ``extra`` arguments)."""
        i = len(self.nodes)
        node = Proc(
            f"worker-{i}",
            [
                "worker",
                "--master",
                ",".join(m.url for m in [self.master, *self.others]),
                "--port",
                "0",
                "--data",
                str(self.root / f"worker-{i}"),
                *self.worker_args,
                *extra,
            ],
            self.root / f"worker-{i}.log",
        )
        node.start()
        self.nodes.append(node)
        return node

    def cluster_info(self) -> dict[str, Any]:
        info: dict[str, Any] = httpx.get(
            f"{self.url}/_cluster", timeout=5, headers=self.headers, verify=self.verify
        ).json()
        return info

    def wait_workers_up(self, count: int, timeout: float = 60.0) -> None:
        """Wait until the master reports ``count`` workers up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = self.cluster_info()
                if sum(w["state"] == "up" for w in info["workers"]) == count:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{count} workers not up within {timeout} s: {self.cluster_info()}")

    def wait_worker_state(self, index: int, state: str, timeout: float = 60.0) -> None:
        """Wait until the master reports worker ``index`` in ``state`` ("up" or "down")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = {w["index"]: w for w in self.cluster_info()["workers"]}
            if workers.get(index, {}).get("state") == state:
                return
            time.sleep(0.1)
        raise TimeoutError(f"worker {index} not {state} within {timeout} s")

    def worker_blobs(self, node: Proc) -> list[dict[str, Any]]:
        """Return every blob a worker holds, following pages of GET /blobs."""
        blobs: list[dict[str, Any]] = []
        start = ""
        while True:
            page = httpx.get(
                f"{node.url}/blobs",
                params={"start": start},
                timeout=10,
                auth=self.auth,
                verify=self.verify,
            ).json()
            blobs += page["blobs"]
            if not page["next"]:
                return blobs
            start = page["next"]

    def blob_file(self, node: int, key: str) -> Path:
        """Return the path of the file of a file-backed value's blob on worker ``node``."""
        blob = next(b for b in self.worker_blobs(self.nodes[node]) if b["key"] == key)
        assert not blob["inline"], f"{key!r} is inline on worker {node}"
        return self.root / f"worker-{node}" / "blobs" / blob_relpath(blob["blob"])

    def blob_url(self, key: str, node: int = 0) -> str:
        """Return the URL at which worker ``node`` serves the live version of ``key``.

        (A GET of a small value is answered by the master itself, so it names no worker.)
        """
        record = httpx.head(f"{self.url}{key}", timeout=5, headers=self.headers)
        held = [
            b
            for b in self.worker_blobs(self.nodes[node])
            if b["key"] == key and b["md5"] == record.headers["content-md5"]
        ]
        assert len(held) == 1, f"worker {node} holds {held} for {key!r}"
        return f"{self.nodes[node].url}/blob/{held[0]['blob']}"

    def pids(self) -> list[int]:
        return [p.pid for p in [self.master, *self.others, *self.nodes] if p.popen is not None]

    def stop(self) -> None:
        """Stop every process this cluster started, side by side."""
        procs = [*self.nodes, self.master, *self.others]
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.reap()


class MakeCluster(Protocol):
    """The ``make_cluster`` fixture: start a cluster with ``settings`` (Cluster's fields)."""

    def __call__(self, **settings: Any) -> Cluster: ...


@contextmanager
def started(root: Path, **settings: Any) -> Iterator[Cluster]:
    """Yield a started cluster under ``root`` (``settings``: Cluster's fields); every process
    it started is stopped when the block ends, however it ends."""
    cluster = Cluster(root, **settings)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@dataclass
class Up:
    """A running ``kittenfs up`` (see :func:`running_up`)."""

    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_up(root: Path, *flags: str, until: str, ports: int = 3) -> Iterator[Up]:
    """Run ``kittenfs up --workers 2`` with ``flags`` and data under ``root`` until the block
    ends (SIGTERM, then kill -9 if it does not stop within 60 s), once its output shows
    ``until``.  Its output goes to a file, never to a pipe a stuck reader could fill.
    ``ports``: how many ports in a row its processes take (a second master takes one)."""
    from kittenfs.cluster import free_port_block

    up = Up(free_port_block(ports), root / "up.log")
    with up.log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kittenfs",
                "up",
                "--workers",
                "2",
                "--port",
                str(up.port),
                "--data",
                str(root / "data"),
                "--s3-port",  # never the default 9000, which parallel tests would share
                str(free_port_block(1)),
                *flags,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while until not in up.output():
            assert time.monotonic() < deadline and process.poll() is None, up.output()
            time.sleep(0.1)
        yield up
    finally:
        process.send_signal(signal.SIGTERM)  # SIGINT may be ignored in a background job
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
