"""Configuration: one typed object per process; each CLI flag maps to one field.

A bad value fails at start with a message naming the flag, the value and what is allowed.
"""

from dataclasses import dataclass
from pathlib import Path

MiB = 1024**2
GiB = 1024**3


class ConfigError(ValueError):
    """A configuration value is not allowed; the message says which and why."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_port(port: int) -> None:
    _require(0 <= port <= 65535, f"--port {port}: must be between 0 and 65535 (0 picks a free one)")


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

    def __post_init__(self) -> None:
        for flag, value in (("--header-timeout", self.header_timeout),
                            ("--idle-timeout", self.idle_timeout),
                            ("--body-timeout", self.body_timeout),
                            ("--max-uploads", self.uploads),
                            ("--max-uploads-per-client", self.uploads_per_client)):
            _require(value > 0, f"{flag} {value:g}: must be positive")



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
    #: Log one line per request.
    verbose: bool = False

    def __post_init__(self) -> None:
        _check_port(self.port)
        _require(self.replica_timeout > 0, "--replica-timeout: must be positive")
        _require(self.replaced_grace >= 0, "--replaced-grace: must not be negative")
        _require(self.auto_rebalance >= 0, "--auto-rebalance: must not be negative (0: off)")
        _require(self.cache_bytes >= 0, "--cache-bytes: must not be negative (0 turns it off)")
        _require(self.cache_value_max >= 0, "--cache-value-max: must not be negative")
        _require(self.replicas >= 1, f"--replicas {self.replicas}: must be at least 1")
        _require(self.max_value_bytes >= 0, "--max-value-bytes: must not be negative")
        _require(self.down_after > 0, "--down-after: must be positive")


WORKER_LIMITS = Limits(uploads_per_client=Limits.uploads)


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
    #: File-backed values up to this many bytes have their MD5 checked on every full read.
    verify_max: int = 4 * 1024 * 1024
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
    #: Log one line per request.
    verbose: bool = False

    def __post_init__(self) -> None:
        _check_port(self.port)
        _require(self.clone_from is None or self.clone_from >= 0,
                 "--clone-from: must be a worker index (>= 0)")
        _require(self.capacity >= 0, "--capacity-bytes: must not be negative (0: no limit)")
        _require(self.clone_rate >= 0, "--clone-rate: must not be negative (0: no limit)")
        _require(self.scrub_rate >= 0, "--scrub-rate: must not be negative (0 turns it off)")
        _require(self.scrub_interval >= 0, "--scrub-interval: must not be negative")
        _require(self.master.startswith(("http://", "https://")),
                 f"--master {self.master!r}: must be a URL such as http://127.0.0.1:3000")
        _require(self.advertise is None or self.advertise.startswith(("http://", "https://")),
                 f"--advertise {self.advertise!r}: must be a URL such as http://10.0.0.5:3001")
        _require(self.inline_max >= 0, "--inline-max: must not be negative")
        _require(self.verify_max >= 0, "--verify-max: must not be negative")
        _require(self.heartbeat_interval > 0, "--heartbeat-interval: must be positive")
