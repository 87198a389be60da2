"""Configuration: one typed object per process; each CLI flag maps to one field.

A bad value fails at start with a message naming the flag, the value and what is allowed.
"""

import ipaddress
import math
from dataclasses import dataclass
from pathlib import Path

from .signing import ClusterKey

MiB = 1024**2
GiB = 1024**3


class ConfigError(ValueError):
    """A configuration value is not allowed; the message says which and why."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_port(port: int) -> None:
    _require(0 <= port <= 65535, f"--port {port}: must be between 0 and 65535 (0 picks a free one)")


def is_loopback(host: str) -> bool:
    """Return True if ``host`` names this machine only (127.0.0.0/8, ::1, localhost): a
    process bound there is out of the network's reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_cluster_key(host: str, key: ClusterKey | None) -> None:
    _require(
        key is not None or is_loopback(host),
        f"--host {host} is reachable from the network: give the cluster a secret "
        "(--cluster-secret-file PATH, or KITTENFS_CLUSTER_SECRET) so that only its own "
        "master and workers can join and write; see docs/security.md",
    )


@dataclass(frozen=True)
class Limits:
    """Time and concurrency limits of one process's HTTP server."""

    #: Seconds from the first byte of a request head to its last; past it, 408 and close.
    header_timeout: float = 10.0
    #: Seconds an idle keep-alive connection stays open.
    idle_timeout: float = 75.0
    #: Longest gap, in seconds, between two pieces of a request body; past it, 408.
    body_timeout: float = 30.0
    #: Uploads (PUT or POST of a value) in progress at once; past it, 503 + Retry-After.
    uploads: int = 1024
    #: Uploads in progress at once from one client address; past it, 429 + Retry-After.
    uploads_per_client: int = 256
    #: Seconds a streamed response may wait for the client to take data; past it, the
    #: connection is cut (a client that stops reading holds nothing longer).
    send_timeout: float = 30.0
    #: Bytes that the responses this process streams may hold at once (read buffers and
    #: send buffers); a stream that finds no room within 10 s gets 503 + Retry-After.
    stream_buffer: int = 64 * MiB

    def __post_init__(self) -> None:
        for flag, value in (
            ("--header-timeout", self.header_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--body-timeout", self.body_timeout),
            ("--max-uploads", self.uploads),
            ("--max-uploads-per-client", self.uploads_per_client),
            ("--send-timeout", self.send_timeout),
            ("--stream-buffer-bytes", self.stream_buffer),
        ):
            _require(value > 0 and math.isfinite(value), f"{flag} {value:g}: must be positive")


@dataclass(frozen=True)
class TLS:
    """A process's TLS files (all optional, PEM)."""

    #: The certificate (chain) this process serves HTTPS with; with ``key``.
    cert: Path | None = None
    #: The private key of ``cert``.
    key: Path | None = None
    #: The CA that signed the certificates of the processes this one talks to (the master
    #: checks its workers', a worker its master's); None: the system's CAs.
    ca: Path | None = None

    def __post_init__(self) -> None:
        _require(
            (self.cert is None) == (self.key is None),
            "--tls-cert and --tls-key: give both, or neither",
        )
        for flag, path in (("--tls-cert", self.cert), ("--tls-key", self.key), ("--ca", self.ca)):
            _require(path is None or path.is_file(), f"{flag} {path}: no such file")


@dataclass(frozen=True)
class MasterConfig:
    """Settings of a master process."""

    #: Directory of the master's LevelDB index (created if missing).
    data: Path
    #: Port to listen on; 0 picks a free one (the "listening on" log line tells which).
    port: int = 3000
    #: Address to listen on.
    host: str = "127.0.0.1"
    #: Copies of each value; capped at the number of registered workers.
    replicas: int = 3
    #: Largest value accepted, in bytes; a larger body gets 413.
    max_value_bytes: int = 5 * GiB
    #: Seconds without a heartbeat after which a worker counts as down.
    down_after: float = 5.0
    #: Seconds a replica may take no data, or not answer, before the write fails (503).
    replica_timeout: float = 30.0
    #: Seconds a replaced version or a moved-away replica is kept for reads already sent to it.
    replaced_grace: float = 10.0
    #: Start a rebalance on its own once the set of up workers has changed and then stayed
    #: the same for this many seconds; 0 turns it off.
    auto_rebalance: float = 0.0
    #: Bytes of recently read or written small values the master keeps and serves itself
    #: (0 turns it off): a hit answers in one round trip instead of a redirect.
    cache_bytes: int = 64 * MiB
    #: Values up to this size are served through the cache (when it is on).
    cache_value_max: int = 64 * 1024
    #: Time and concurrency limits of the HTTP server.
    limits: Limits = Limits()
    #: The cluster secret: workers must sign registrations, heartbeats and reports with it,
    #: and the master signs every call to a worker and every link it sends a client to.
    #: None only on a loopback address (docs/security.md).
    cluster_key: ClusterKey | None = None
    #: A bootstrap admin credential: ``Authorization: Bearer <this token>`` may do anything.
    #: Giving one turns auth on.
    admin_token: str | None = None
    #: What requests without credentials may do: "none", "read" or "write".  Giving it turns
    #: auth on; without it (and without an admin token) anyone may do anything.
    anonymous: str | None = None
    #: TLS: serve HTTPS, and the CA of the workers' certificates.
    tls: TLS = TLS()
    #: URL by which clients reach this master; the links it hands out (a redirect's way back,
    #: ``kittenfs sign``) point there.  Default: the URL it listens on.
    advertise: str | None = None
    #: Log one line per request.
    verbose: bool = False

    def __post_init__(self) -> None:
        _check_port(self.port)
        _check_cluster_key(self.host, self.cluster_key)
        _require(
            self.advertise is None or self.advertise.startswith(("http://", "https://")),
            f"--advertise {self.advertise!r}: must be a URL such as https://kfs.example:3000",
        )
        _require(
            self.anonymous in (None, "none", "read", "write"),
            f"--anonymous {self.anonymous}: must be none, read or write",
        )
        _require(
            self.admin_token is None or len(self.admin_token) >= 16,
            "--admin-token: must have at least 16 characters",
        )
        _require(
            is_loopback(self.host) or self.admin_token is not None or self.anonymous is not None,
            f"--host {self.host} is reachable from the network and auth is off: give an "
            "admin credential (--admin-token, or KITTENFS_ADMIN_TOKEN) or say what "
            "anyone may do with --anonymous none|read|write",
        )
        _require(self.replica_timeout > 0, "--replica-timeout: must be positive")
        _require(self.replaced_grace >= 0, "--replaced-grace: must not be negative")
        _require(self.auto_rebalance >= 0, "--auto-rebalance: must not be negative (0: off)")
        _require(self.cache_bytes >= 0, "--cache-bytes: must not be negative (0 turns it off)")
        _require(self.cache_value_max >= 0, "--cache-value-max: must not be negative")
        _require(self.replicas >= 1, f"--replicas {self.replicas}: must be at least 1")
        _require(self.max_value_bytes >= 0, "--max-value-bytes: must not be negative")
        _require(self.down_after > 0, "--down-after: must be positive")


#: A worker streams checked blobs in 1 MiB pieces (about 2 MiB a stream): it may hold more.
WORKER_LIMITS = Limits(uploads_per_client=Limits.uploads, stream_buffer=256 * MiB)


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of a worker process."""

    #: URL of the master, e.g. http://127.0.0.1:3000.
    master: str
    #: Directory of the worker's blobs and LevelDB (created if missing).
    data: Path
    #: Port to listen on; 0 picks a free one.
    port: int = 3001
    #: Address to listen on.
    host: str = "127.0.0.1"
    #: URL by which the master and clients reach this worker; default http://HOST:PORT.
    advertise: str | None = None
    #: Values up to this many bytes are kept in LevelDB, larger ones in files.
    inline_max: int = 64 * 1024
    #: Bytes of a read whose blocks are checked before the response starts: a damaged
    #: block among them sends the client to another replica; a later one cuts the response.
    verify_max: int = 16 * MiB
    #: Seconds between heartbeats to the master.
    heartbeat_interval: float = 1.0
    #: Bytes of values this worker may hold, 0 for no limit but the disk's; past it, writes
    #: are refused as on a full disk (507).
    capacity: int = 0
    #: Before its first registration, copy every blob of this worker (an index) first.
    clone_from: int | None = None
    #: Bytes per second a clone copies; 0 means no limit.
    clone_rate: float = 0.0
    #: Bytes per second the background scrub reads to check stored values; 0 turns it off.
    scrub_rate: float = 4e6
    #: Seconds between two scrub passes.
    scrub_interval: float = 3600.0
    #: Time and concurrency limits of the HTTP server; the master is a worker's one writer,
    #: so it may use all of the uploads.
    limits: Limits = WORKER_LIMITS
    #: The cluster secret, the master's own: only requests signed with it may write, delete
    #: or list, and blobs are served only on a link the master signed (or to the master).
    #: None only on a loopback address (docs/security.md).
    cluster_key: ClusterKey | None = None
    #: Serve blobs to anyone who knows their id, without a link signed by the master.
    public_reads: bool = False
    #: TLS: serve HTTPS, and the CA of the master's (and other workers') certificates.
    tls: TLS = TLS()
    #: Log one line per request.
    verbose: bool = False

    def __post_init__(self) -> None:
        _check_port(self.port)
        _check_cluster_key(self.host, self.cluster_key)
        _require(
            self.clone_from is None or self.clone_from >= 0,
            "--clone-from: must be a worker index (>= 0)",
        )
        _require(self.capacity >= 0, "--capacity-bytes: must not be negative (0: no limit)")
        _require(self.clone_rate >= 0, "--clone-rate: must not be negative (0: no limit)")
        _require(self.scrub_rate >= 0, "--scrub-rate: must not be negative (0 turns it off)")
        _require(self.scrub_interval >= 0, "--scrub-interval: must not be negative")
        _require(
            self.master.startswith(("http://", "https://")),
            f"--master {self.master!r}: must be a URL such as http://127.0.0.1:3000",
        )
        _require(
            self.advertise is None or self.advertise.startswith(("http://", "https://")),
            f"--advertise {self.advertise!r}: must be a URL such as http://10.0.0.5:3001",
        )
        _require(self.inline_max >= 0, "--inline-max: must not be negative")
        _require(self.verify_max >= 0, "--verify-max: must not be negative")
        _require(self.heartbeat_interval > 0, "--heartbeat-interval: must be positive")
