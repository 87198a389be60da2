"""An etcd cluster of our own, for ``kittenfs up --index etcd`` and the tests: ``members``
etcd processes (Debian's ``etcd-server``) on consecutive ports of 127.0.0.1, each with its
data under ``root``, fsync on (etcd syncs its log before it answers a write), and the
revisions older than 5 minutes compacted away (etcd keeps every one otherwise).

Member ``i`` serves clients on ``port + 2i`` and its peers on ``port + 2i + 1``.  Each runs
in a session of its own, so that it can be stopped (or paused, or killed) by its PID.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Self

from .pids import alive, stop

#: Seconds to wait for the cluster to elect a leader, or a member to stop.
WAIT = 60.0
#: The cluster's token: members of another cluster on the same ports are refused.
TOKEN = "kittenfs-local"


class EtcdMissing(RuntimeError):
    """etcd is not installed."""


def program() -> str | None:
    """Return the path of the ``etcd`` program, or None."""
    return shutil.which("etcd")


class LocalEtcd:
    """``members`` etcd members with their data under ``root`` (made if missing)."""

    def __init__(self, root: Path, port: int, members: int = 3) -> None:
        found = program()
        if found is None:
            raise EtcdMissing("etcd is not installed (on Debian: apt-get install etcd-server)")
        self.etcd = found
        self.root = root
        self.port = port
        self.members = members
        self.pids: list[int] = [0] * members

    def name(self, member: int) -> str:
        return f"m{member}"

    def client_port(self, member: int) -> int:
        return self.port + 2 * member

    def _peer(self, member: int) -> str:
        return f"http://127.0.0.1:{self.port + 2 * member + 1}"

    def endpoint(self, member: int) -> str:
        return f"127.0.0.1:{self.client_port(member)}"

    def url(self, prefix: str = "kittenfs") -> str:
        """The ``--index`` of an index under ``prefix`` on this cluster."""
        endpoints = ",".join(self.endpoint(m) for m in range(self.members))
        return f"etcd://{endpoints}/{prefix}"

    def start(self) -> Self:
        """Start every member not running; return once the cluster has a leader.  Raise
        RuntimeError, with the members' last words, if it has none within WAIT seconds."""
        for member in range(self.members):
            if not self.pids[member]:
                self.start_member(member, wait=False)
        self.wait_healthy(range(self.members))
        return self

    def start_member(self, member: int, wait: bool = True) -> None:
        """Start one member (again, if it ran before: it keeps its data)."""
        self.root.mkdir(parents=True, exist_ok=True)
        cluster = ",".join(f"{self.name(m)}={self._peer(m)}" for m in range(self.members))
        client = f"http://{self.endpoint(member)}"
        with open(self.root / f"{self.name(member)}.log", "ab") as log:
            self.pids[member] = _spawn(
                [
                    self.etcd, "--name", self.name(member),
                    "--data-dir", str(self.root / self.name(member)),
                    "--listen-client-urls", client, "--advertise-client-urls", client,
                    "--listen-peer-urls", self._peer(member),
                    "--initial-advertise-peer-urls", self._peer(member),
                    "--initial-cluster", cluster, "--initial-cluster-token", TOKEN,
                    "--initial-cluster-state", "new",
                    # etcd keeps every revision of every key until compacted: keep 5 min's
                    "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "5m",
                ],
                log,
            )  # fmt: skip
        if wait:
            self.wait_healthy([member])

    def wait_healthy(self, members: range | list[int]) -> None:
        deadline = time.monotonic() + WAIT
        for member in members:
            while not self.healthy(member):
                if time.monotonic() > deadline or not alive(self.pids[member]):
                    raise RuntimeError(f"etcd member {member} did not start:\n{self._last_words()}")
                time.sleep(0.1)

    def healthy(self, member: int) -> bool:
        """Return True if ``member`` answers and its cluster has a leader."""
        try:
            with urllib.request.urlopen(f"http://{self.endpoint(member)}/health", timeout=5) as r:
                return bool(json.load(r).get("health") == "true")
        except (OSError, ValueError):
            return False

    def leader(self) -> int | None:
        """Return the member that leads the cluster now, or None if no running member says."""
        for member in range(self.members):
            if not self.pids[member]:
                continue
            request = urllib.request.Request(
                f"http://{self.endpoint(member)}/v3/maintenance/status", data=b"{}", method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    status = json.load(response)
            except (OSError, ValueError):
                continue
            if status.get("leader") and status["leader"] == status["header"]["member_id"]:
                return member
        return None

    def signal(self, member: int, sig: int) -> None:
        """Send ``sig`` to one member; SIGKILL also waits for it to go."""
        pid = self.pids[member]
        if not pid:
            return
        if sig == signal.SIGKILL:
            stop(pid, sig, WAIT)
            self.pids[member] = 0
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL after WAIT seconds), keeping the data."""
        for member, pid in enumerate(self.pids):
            if pid:
                stop(pid, signal.SIGTERM, WAIT)
                self.pids[member] = 0

    def remove(self) -> None:
        """Stop every member and remove the cluster's files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _last_words(self) -> str:
        words = []
        for member in range(self.members):
            log = self.root / f"{self.name(member)}.log"
            if log.exists():
                words.append(f"--- {log}\n" + "\n".join(log.read_text().splitlines()[-15:]))
        return "\n".join(words)


@contextlib.contextmanager
def temporary_etcd(members: int, prefix: str = "kfs-etcd-") -> Iterator[LocalEtcd]:
    """Yield a cluster of ``members`` started in a new temporary directory on free ports;
    stop it and remove its files when the block ends."""
    from .cluster import free_port_block  # cluster.py imports this module

    etcd = LocalEtcd(Path(tempfile.mkdtemp(prefix=prefix)), free_port_block(2 * members), members)
    try:
        yield etcd.start()
    finally:
        etcd.remove()


def _spawn(argv: list[str], log: IO[bytes]) -> int:
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )
    return process.pid
