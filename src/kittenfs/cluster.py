"""A whole local cluster, one master and N workers, as child processes (``kittenfs up``).

Each process gets its own directory under the data directory (``master/``, ``worker-0/``,
...), so starting again with the same data directory finds every worker and value again.
The benchmark starts the same cluster, with its output sent to log files.

With ``--index postgres`` the index is in a PostgreSQL server of the cluster's own
(``DATA/postgres``, localpg.py), with ``--index etcd`` in an etcd cluster of its own (three
members in ``DATA/etcd``, localetcd.py); either is shared by two masters (``master/``,
``master-1/``; more with ``--masters``), and every worker beats to each.
"""

import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

import httpx

from .cli import error
from .config import MasterConfig, UpConfig, WorkerConfig
from .datadir import MASTER_ID_FILE, MASTER_KEY_FILE
from .localca import local_ca
from .localetcd import EtcdMissing, LocalEtcd
from .localpg import LocalPostgres, PostgresMissing, home_for
from .settings import CONFIG_ENV, options
from .tls import client_context

#: The environment variable through which a master gets its admin token.
ADMIN_ENV = "KITTENFS_ADMIN_TOKEN"
#: The variables of the master's and workers' settings: a cluster's children take theirs
#: from their flags alone (a KITTENFS_ADVERTISE meant for another process would send every
#: worker's clients to one URL).
SETTINGS_ENV = frozenset(
    {CONFIG_ENV}
    | {
        name
        for cls in (MasterConfig, WorkerConfig)
        for option in options(cls)
        for name in option.env
    }
)

if TYPE_CHECKING:
    from .reliability.network import Network

#: Seconds to wait for every process to answer /health.
START_TIMEOUT = 30.0
#: Seconds a child gets to stop after SIGTERM before it is killed.
STOP_GRACE = 10.0


def port_free(port: int, reuse: bool = False) -> bool:
    """Return True if ``port`` can be bound on 127.0.0.1 (with ``reuse`` as a server binds it,
    so a port in TIME_WAIT counts as free)."""
    with socket.socket() as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_block(count: int) -> int:
    """Return a port P such that P .. P+count-1 are all free on 127.0.0.1 right now.

    The block is drawn below the kernel's ephemeral range: a port from that range that is
    free now can be taken a moment later by any outgoing connection, and a busy machine (or
    a parallel test suite) makes thousands of those.
    """
    low = _ephemeral_range()[0]
    for _ in range(200):
        base = random.randrange(1024, max(1025, low - count))
        if all(port_free(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no block of {count} free ports found")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


#: Under the data directory: the cluster secret that ``kittenfs up`` gives its processes,
#: and the admin token of ``kittenfs up --auth``.
SECRET_FILE = "cluster.secret"
TOKEN_FILE = "admin.token"


def secret_file(data: Path, name: str) -> Path:
    """Return the path of a secret kept in ``data`` (made the first time: 32 random bytes,
    URL-safe, readable by its owner only)."""
    path = data / name
    if not path.exists():
        data.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    return path


class LocalCluster:
    """A master on ``port`` and ``workers`` workers on the ports after it, on 127.0.0.1, or
    each on a host of its own when ``network`` is given (child ``c`` on host ``c``).

    They share a cluster secret kept in ``data``; with ``auth``, the master also has an
    admin token kept there (``token``), which this object uses for its own requests.  With
    ``s3_port``, the master serves the S3 API there too (at ``s3_url``)."""

    def __init__(
        self,
        data: Path,
        port: int,
        workers: int,
        replicas: int,
        extra: tuple[str, ...] = (),
        log: IO[bytes] | None = None,
        master_extra: tuple[str, ...] = (),
        network: "Network | None" = None,
        auth: bool = False,
        tls: bool = False,
        s3_port: int | None = None,
        index: str = "",
        masters: int = 1,
    ) -> None:
        self.data, self.port, self.workers, self.replicas = data, port, workers, replicas
        #: The masters' ``--index`` ("": LevelDB in each one's directory), and how many:
        #: more than one share a PostgreSQL index.  Master 0 listens on ``port``, master j
        #: on ``port + workers + j``; children are the masters, then the workers.
        self.index, self.masters = index, masters
        self.extra, self.log, self.master_extra = extra, log, master_extra
        self.network = network
        #: The first master serves the S3 API there (given).
        self.s3_port = s3_port
        #: With ``tls``: a local CA made in ``data/tls`` (its certificate is ``self.ca``).
        self.ca: Path | None = None
        if tls:
            files = local_ca(data / "tls")
            self.ca = files.ca
            self.extra = (
                *self.extra,
                "--tls-cert",
                str(files.cert),
                "--tls-key",
                str(files.key),
                "--ca",
                str(files.ca),
            )
        self.scheme = "https" if tls else "http"
        self.url = f"{self.scheme}://{self.host(0)}:{port}"
        self.master_urls = [
            self.url,
            *(f"{self.scheme}://{self.host(j)}:{port + workers + j}" for j in range(1, masters)),
        ]
        self.s3_url = f"{self.scheme}://{self.host(0)}:{s3_port}" if s3_port is not None else None
        self.urls: list[str] = []
        self.children: list[subprocess.Popen[bytes]] = []
        self.commands: list[list[str]] = []
        self.secret = secret_file(data, SECRET_FILE)
        self.token = secret_file(data, TOKEN_FILE).read_text().strip() if auth else None
        self.headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def host(self, child: int) -> str:
        """The address child ``child`` listens on."""
        return self.network.address(child) if self.network else "127.0.0.1"

    def start(self) -> None:
        """Start the masters, then the workers one at a time (so worker-i gets index i)."""
        index = ("--index", self.index) if self.index else ()
        for j in range(self.masters):
            data = self.data / self.master_name(j)
            if j:  # every master has the first's key: it never goes into the index
                data.mkdir(parents=True, exist_ok=True)
                shutil.copy(self.data / "master" / MASTER_KEY_FILE, data / MASTER_KEY_FILE)
            self._spawn(
                self.port + (self.workers + j if j else 0),
                "master",
                "--data",
                str(data),
                "--replicas",
                str(self.replicas),
                *index,
                *(("--s3-port", str(self.s3_port)) if self.s3_port and not j else ()),
                *self.master_extra,
            )
            self._wait_healthy(0)
        for i in range(self.workers):
            self._spawn(
                self.port + 1 + i,
                "worker",
                "--master",
                ",".join(self.master_urls),
                "--data",
                str(self.data / f"worker-{i}"),
            )
            self._wait_healthy(i + 1)

    @staticmethod
    def master_name(j: int) -> str:
        """The name (and directory) of master ``j``: master, master-1, ..."""
        return f"master-{j}" if j else "master"

    def role(self, child: int) -> str:
        """The name of child ``child``: master, master-1, ..., worker-0, ..."""
        if child < self.masters:
            return self.master_name(child)
        return f"worker-{child - self.masters}"

    def _spawn(self, port: int, *args: str) -> None:
        child = len(self.children)
        prefix = self.network.prefix(child) if self.network else []
        command = [
            *prefix,
            sys.executable,
            "-m",
            "kittenfs",
            *args,
            "--host",
            self.host(child),
            "--port",
            str(port),
            "--cluster-secret-file",
            str(self.secret),
            *self.extra,
        ]
        self.commands.append(command)
        self.children.append(
            subprocess.Popen(command, stdout=self.log, stderr=self.log, env=self._environment())
        )
        self.urls.append(f"{self.scheme}://{self.host(child)}:{port}")

    def signal(self, child: int, signum: int) -> None:
        """Send ``signum`` to child ``child`` (0 is the master; with one master, 1 + i is
        worker i)."""
        if self.children[child].poll() is None:
            self.children[child].send_signal(signum)

    def _environment(self) -> dict[str, str]:
        """The children's environment: the admin token goes there, not on a command line
        that any user of the machine can read."""
        environment = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
        if self.token:
            environment[ADMIN_ENV] = self.token
        return environment

    def restart(self, child: int, extra: tuple[str, ...] = ()) -> None:
        """Start child ``child`` again, with the same command (plus ``extra`` arguments this
        time), once it has exited."""
        self.children[child].wait()
        self.children[child] = subprocess.Popen(
            [*self.commands[child], *extra],
            stdout=self.log,
            stderr=self.log,
            env=self._environment(),
        )

    def _wait_healthy(self, workers: int) -> None:
        """Wait until every process answers /health and the master sees ``workers`` up."""
        deadline = time.monotonic() + START_TIMEOUT
        verify = client_context(self.ca) if self.ca else True
        while time.monotonic() < deadline:
            if any(child.poll() is not None for child in self.children):
                raise RuntimeError("a process exited during start-up; see its log")
            if self._healthy(workers, verify):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the cluster was not healthy within {START_TIMEOUT:.0f} s")

    def _healthy(self, workers: int, verify: ssl.SSLContext | bool) -> bool:
        """Return True if every process answers /health, the master's with our master's id
        (not another cluster's on the same port), and the master sees ``workers`` up."""
        try:
            for url in self.urls:
                health = httpx.get(f"{url}/health", timeout=1.0, verify=verify)
                health.raise_for_status()
                if url == self.url and health.json().get("id") != self._master_id():
                    return False
            cluster = httpx.get(
                f"{self.url}/_cluster", timeout=1.0, verify=verify, headers=self.headers
            ).json()
        except (httpx.HTTPError, ValueError):
            return False
        up: int = sum(w["state"] == "up" for w in cluster["workers"])
        return up >= workers

    def _master_id(self) -> str | None:
        """The id our master wrote once it listened; None before that."""
        try:
            return (self.data / "master" / MASTER_ID_FILE).read_text().strip()
        except OSError:
            return None

    def running(self) -> bool:
        """Return True while every child runs."""
        return all(child.poll() is None for child in self.children)

    def pids(self) -> dict[str, int]:
        """Return the PID of each process by role: master, worker-0, worker-1, ..."""
        return {self.role(i): child.pid for i, child in enumerate(self.children)}

    def stop(self) -> None:
        """Stop every child: SIGTERM, then SIGKILL after STOP_GRACE seconds."""
        stop_processes(self.children)


def stop_processes(processes: list[subprocess.Popen[bytes]], grace: float = STOP_GRACE) -> None:
    """Stop ``processes`` by their PIDs: SIGTERM to each in turn, then SIGKILL to any still
    running ``grace`` seconds later; return once every one has been reaped."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def local_cluster(
    workers: int,
    replicas: int,
    keep: str | None = None,
    master_extra: tuple[str, ...] = (),
    hosts: bool = False,
    auth: bool | None = None,
    s3: bool = False,
    index: str = "",
    masters: int = 1,
) -> Iterator[LocalCluster]:
    """Run a fresh local cluster in a temp dir (under ``keep``, and kept, if given), with its
    logs in cluster.log there: the benchmark and the reliability suite run on one.  With
    ``hosts``, every process runs in a network namespace of its own (this needs root).
    ``auth`` (by default: with ``hosts``, as a master off loopback must) gives the master an
    admin token; ``cluster.headers`` carry it.  With ``s3``, the master serves the S3 API on
    the port after the last worker's (``cluster.s3_url``); ``index`` and ``masters`` are
    LocalCluster's (several masters on a shared index)."""
    if keep is not None:
        Path(keep).mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="kfs-", dir=keep))
    with (data / "cluster.log").open("wb") as log, ExitStack() as cleanup:
        network = None
        if hosts:
            from .reliability.network import Network

            network = Network(workers + 1)
            cleanup.callback(network.teardown)
        ports = workers + masters + s3
        port = 3000 if network else free_port_block(ports)  # a namespace's ports are free
        cluster = LocalCluster(
            data,
            port,
            workers,
            replicas,
            log=log,
            master_extra=master_extra,
            network=network,
            auth=hosts if auth is None else auth,
            s3_port=port + workers + masters if s3 else None,
            index=index,
            masters=masters,
        )
        try:
            try:
                cluster.start()
            except RuntimeError as exc:
                tail = (data / "cluster.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{exc}; the end of cluster.log:\n{tail}") from exc
            yield cluster
        finally:
            cluster.stop()
            if keep is None:
                shutil.rmtree(data, ignore_errors=True)


#: Seconds before a worker that died is started again: doubled after each death, up to
#: RESTART_MAX, and back to RESTART_FIRST once it has run for RESTART_RESET seconds.
RESTART_FIRST = 1.0
RESTART_MAX = 30.0
RESTART_RESET = 60.0


def run_local_cluster(config: UpConfig) -> int:
    """Run a master and ``config.workers`` workers until Ctrl-C or SIGTERM, starting again
    (with backoff) a worker that dies; return the exit status (with ``auth``: an admin
    token, made in ``data`` and printed; with ``tls``: HTTPS, with a local CA in
    ``data/tls``)."""
    ports = range(config.port, config.port + config.workers + config.masters)
    taken = [port for port in ports if not port_free(port, reuse=True)]
    s3_port = _s3_port(config, ports)
    if s3_port in ports or not port_free(s3_port, reuse=True):
        error(
            f"port {s3_port} (the S3 API) is in use on 127.0.0.1 or is one of the cluster's "
            f"ports {ports.start}..{ports.stop - 1}: give --s3-port another one"
        )
        return 1
    if taken:
        names = ", ".join(f"{port} ({_role(config, port - config.port)})" for port in taken)
        which = f"ports {names} are" if len(taken) > 1 else f"port {names} is"
        error(
            f"{which} in use on 127.0.0.1 (another kittenFS, or another program): stop it, "
            f"or give --port the first of {len(ports)} free ports in a row"
        )
        return 1
    with ExitStack() as cleanup:
        index = ""
        if config.index == "postgres":
            try:
                index = _local_postgres(config.data, cleanup)
            except (PostgresMissing, subprocess.CalledProcessError, OSError) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                error(f"up: PostgreSQL did not start: {exc} {detail.decode(errors='replace')}")
                return 1
        if config.index == "etcd":
            try:
                index = _local_etcd(config.data, cleanup)
            except (EtcdMissing, RuntimeError, OSError) as exc:
                error(f"up: etcd did not start: {exc}")
                return 1
        return _run(config, s3_port, index)


def _local_postgres(data: Path, cleanup: ExitStack) -> str:
    """Start the cluster's own PostgreSQL server (in ``data/postgres``, on a free port; it
    stops when ``cleanup`` closes) and return the URL of its ``kittenfs`` database."""
    server = LocalPostgres(home_for(data), free_port_block(1)).start()
    cleanup.callback(server.halt)
    url = server.create_database("kittenfs")
    print(
        f"  PostgreSQL {server.bin.parent.name} for the index: {url} (files in {server.root})",
        flush=True,
    )
    return url


def _local_etcd(data: Path, cleanup: ExitStack) -> str:
    """Start the cluster's own etcd cluster (three members in ``data/etcd``, on free ports;
    they stop when ``cleanup`` closes) and return the ``--index`` of its ``kittenfs``
    prefix."""
    members, root = 3, data / "etcd"
    # The members' peer URLs are in their data: they start again on the ports they had.
    ports = root / "port"
    port = int(ports.read_text()) if ports.exists() else free_port_block(2 * members)
    etcd = LocalEtcd(root, port, members)
    root.mkdir(parents=True, exist_ok=True)
    ports.write_text(f"{port}\n")
    cleanup.callback(etcd.stop)
    etcd.start()
    url = etcd.url()
    print(f"  etcd ({members} members) for the index: {url} (files in {etcd.root})", flush=True)
    return url


def _run(config: UpConfig, s3_port: int, index: str) -> int:
    """Run the cluster until a signal (see run_local_cluster)."""
    cluster = LocalCluster(
        config.data,
        config.port,
        config.workers,
        config.replicas,
        (*(("--verbose",) if config.verbose else ()), "--log-format", config.log_format),
        auth=config.auth,
        tls=config.tls,
        s3_port=s3_port,
        index=index,
        masters=config.masters,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a shell starts a background job with SIGINT ignored, and
    # Python then leaves it ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cluster.start()
        print(
            f"kittenFS is up: master {', '.join(cluster.master_urls)}, "
            f"{config.workers} workers, data in {config.data}",
            flush=True,
        )
        print(f"  S3 API at {cluster.s3_url} (docs/s3.md)", flush=True)
        print(f"  web console at {cluster.master_urls[0]}/ui (docs/console.md)", flush=True)
        _print_tour(cluster)
        return _supervise(cluster)
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        error(f"up: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()
        print("kittenfs up: stopped", flush=True)


#: The S3 API's port under ``kittenfs up`` unless --s3-port says otherwise (MinIO's).
S3_PORT = 9000


def _s3_port(config: UpConfig, ports: range) -> int:
    """Return the port ``up``'s S3 API takes: --s3-port, else 9000 if it is free and not one
    of the cluster's ``ports``, else a free port that is not one of them."""
    if config.s3_port is not None:
        return config.s3_port
    if S3_PORT not in ports and port_free(S3_PORT, reuse=True):
        return S3_PORT
    for _ in range(100):
        port = free_port_block(1)
        if port not in ports:
            return port
    raise RuntimeError("no free port found for the S3 API")


def _role(config: UpConfig, offset: int) -> str:
    """The name of the child on port ``config.port + offset``."""
    if offset == 0:
        return "the master"
    if offset <= config.workers:
        return f"worker-{offset - 1}"
    return LocalCluster.master_name(offset - config.workers)


def _supervise(cluster: LocalCluster) -> int:
    """Watch the children until a signal: start a worker that died again after a backoff;
    return 1 if the master dies (the workers cannot go on without it)."""
    delay = [RESTART_FIRST] * len(cluster.children)
    started = [time.monotonic()] * len(cluster.children)
    while True:
        time.sleep(0.2)
        status = cluster.children[0].poll()
        if status is not None:
            error(f"up: the master exited with status {status}; stopping the workers")
            return 1
        for child in range(1, len(cluster.children)):
            status = cluster.children[child].poll()
            if status is None:
                if time.monotonic() - started[child] > RESTART_RESET:
                    delay[child] = RESTART_FIRST
                continue
            print(
                f"kittenfs up: {cluster.role(child)} exited with status {status}; "
                f"starting it again in {delay[child]:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            _sleep_watching(cluster, delay[child])
            cluster.restart(child)
            started[child] = time.monotonic()
            delay[child] = min(delay[child] * 2, RESTART_MAX)


def _sleep_watching(cluster: LocalCluster, seconds: float) -> None:
    """Sleep ``seconds``, but no longer than the master lives."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and cluster.children[0].poll() is None:
        time.sleep(0.1)


def _print_tour(cluster: LocalCluster) -> None:
    """Print how to try the cluster, and how auth and TLS stand."""
    curl = f"curl --cacert {cluster.ca}" if cluster.ca else "curl"
    if cluster.ca:
        print(
            f"  TLS is on: the CA that signed the certificates is {cluster.ca} "
            f"(kittenfs --ca, curl --cacert)"
        )
    if cluster.token is None:
        print(
            f"  try: {curl} -X PUT -d 'hello' {cluster.url}/hello && {curl} -L {cluster.url}/hello"
        )
        print(
            "  auth is off: anyone on this machine may read, write and administer. "
            "Run `kittenfs up --auth` to turn it on.",
            flush=True,
        )
        return
    print(f"  auth is on; admin token: {cluster.token}")
    print(
        f"  (kept in {cluster.data / TOKEN_FILE}): export KITTENFS_TOKEN=$(cat "
        f"{cluster.data / TOKEN_FILE})"
    )
    print(
        f"  try: {curl} -X PUT -H \"Authorization: Bearer $KITTENFS_TOKEN\" -d 'hello' "
        f"{cluster.url}/hello",
        flush=True,
    )
