"""Configuration: one typed object per process, the single source of every setting.

Each field of ``MasterConfig``, ``WorkerConfig`` and ``ClientConfig`` (and of the nested
``Limits`` and ``TLS``) is one setting, declared with :func:`setting`: its default, what it
means, what is allowed.  ``settings.py`` generates from these fields the command line flags,
the environment variables, the keys of a config file and docs/configuration.md, so a default
is written once and a container can be configured by environment alone:

    flag ``--foo-bar``  <->  environment ``KITTENFS_FOO_BAR``  <->  file key ``foo-bar``

Precedence: flag > environment > config file (``--config``) > default.  A bad value fails at
start with one line that names the flag or variable and says what is allowed.

Why by hand rather than pydantic-settings: the command line must start fast (``kittenfs ls``
under 150 ms), and importing pydantic-settings with one model of these fields costs about
0.3 s of CPU (about 20 times an empty interpreter) against a few milliseconds for dataclasses
and argparse; pydantic would also be a new dependency of the client, and its CLI support does
not follow this project's flag names, units (MB/s) or sub-commands.  The generator is about
250 lines over the standard library (``settings.py``), unit-tested in tests/unit/test_config.py.
"""

import ipaddress
import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from .signing import BadSecret, ClusterKey

KiB = 1024
MiB = 1024**2
GiB = 1024**3
#: The log formats a server may write (logs.py).
FORMATS = ("text", "json")
#: The prefix of every environment variable of a setting.
ENV_PREFIX = "KITTENFS_"


class ConfigError(ValueError):
    """A configuration value is not allowed; the message says which and why."""


@dataclass(frozen=True)
class Check:
    """A rule a setting's value must follow, and how to say it: "must be <allowed>"."""

    test: Callable[[Any], bool]
    allowed: str


def between(low: float, high: float, note: str = "") -> Check:
    """Allow ``low`` <= value <= ``high``."""
    return Check(lambda v: low <= v <= high, f"between {low:g} and {high:g}{note}")


POSITIVE = Check(lambda v: v > 0 and math.isfinite(v), "positive")
NOT_NEGATIVE = Check(lambda v: v >= 0 and math.isfinite(v), "0 or more")
AT_LEAST_ONE = Check(lambda v: v >= 1, "at least 1")
URL = Check(lambda v: v.startswith(("http://", "https://")), "a URL such as http://127.0.0.1:3000")
FILE = Check(lambda p: p.is_file(), "an existing file")
MASTERS = Check(
    lambda v: all(u.strip().startswith(("http://", "https://")) for u in v.split(",")),
    "a URL such as http://127.0.0.1:3000, or several, comma-separated",
)


def masters(value: str) -> list[str]:
    """Return the master URLs of a ``--master`` value (one URL, or several, comma-separated:
    masters that share an index)."""
    return [url.strip().rstrip("/") for url in value.split(",") if url.strip()]


INDEX = Check(
    lambda v: v == "" or v.startswith(("leveldb:", "postgresql://", "postgres://", "etcd://")),
    "leveldb:DIR, postgresql://USER@HOST:PORT/DB or etcd://HOST:PORT[,HOST:PORT...]/PREFIX",
)
LONG_TOKEN = Check(lambda v: len(v) >= 16, "at least 16 characters long")


def read_cluster_secret(path: str) -> ClusterKey:
    """Return the cluster keys in the secret file ``path`` (one secret a line)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(getattr(exc, "strerror", None) or str(exc)) from None
    return cluster_secret(text)


def cluster_secret(text: str) -> ClusterKey:
    """Return the cluster keys in ``text``, the secret itself (one secret a line)."""
    try:
        return ClusterKey.from_text(text)
    except BadSecret as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class Setting:
    """How one config field is set, shown and checked (see :func:`setting`)."""

    help: str
    flag: str | None = None
    metavar: str | None = None
    check: Check | None = None
    choices: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None
    #: The value's unit on the command line, in the field's unit (MB/s flags: 1e6).
    scale: float = 1.0
    #: "bytes": an integer that may carry a unit (64MiB); "": by the field's type.
    kind: str = ""
    #: How the help shows the default, where the value alone would not say it.
    shown: str | None = None
    #: Read from the environment (off for per-invocation options).
    env: bool = True
    #: More variables, after the flag's own, each with its parser: (name, parse); their
    #: values are never printed (the cluster secret's content).
    extra_env: tuple[tuple[str, Callable[[str], Any]], ...] = ()
    #: Never print the value (tokens).
    secret: bool = False


def setting(default: Any = MISSING, help: str = "", **how: Any) -> Any:
    """Declare a config field as a setting: its default, its help line, and ``how`` (the
    fields of :class:`Setting`); a field without a default is required."""
    return field(default=default, metadata={"setting": Setting(help, **how)})


def check_fields(config: Any) -> None:
    """Raise ConfigError naming the flag of the first field of ``config`` whose value breaks
    its setting's rule."""
    for f in fields(config):
        rule: Setting | None = f.metadata.get("setting")
        value = getattr(config, f.name)
        if rule is None or value is None:
            continue
        flag = rule.flag or "--" + f.name.replace("_", "-")
        if rule.choices and value not in rule.choices:
            raise ConfigError(f"{flag} {value}: must be one of {', '.join(rule.choices)}")
        if rule.check is not None and not rule.check.test(value):
            shown = (
                "..." if rule.secret else f"{value / rule.scale:g}" if rule.scale != 1 else value
            )
            raise ConfigError(f"{flag} {shown}: must be {rule.check.allowed}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


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


def _cluster_key(who: str) -> Any:
    return setting(
        None,
        f"file of the cluster secret shared by the master and its workers ({who}); one "
        "secret a line during a rotation.  KITTENFS_CLUSTER_SECRET may hold the secret itself",
        flag="--cluster-secret-file",
        metavar="PATH",
        parse=read_cluster_secret,
        extra_env=(("KITTENFS_CLUSTER_SECRET", cluster_secret),),
        shown="none: loopback only",
    )


_PORT = between(0, 65535, " (0 picks a free one)")


@dataclass(frozen=True)
class Limits:
    """Time and concurrency limits of one process's HTTP server."""

    #: Seconds from the first byte of a request head to its last; past it, 408 and close.
    header_timeout: float = setting(
        10.0, "seconds a request head may take to arrive", metavar="SECONDS", check=POSITIVE
    )
    #: Seconds an idle keep-alive connection stays open.
    idle_timeout: float = setting(
        75.0, "seconds an idle connection is kept", metavar="SECONDS", check=POSITIVE
    )
    #: Longest gap, in seconds, between two pieces of a request body; past it, 408.
    body_timeout: float = setting(
        30.0, "seconds a request body may pause", metavar="SECONDS", check=POSITIVE
    )
    #: Uploads (PUT or POST of a value) in progress at once; past it, 503 + Retry-After.
    uploads: int = setting(
        1024, "uploads in progress at once", flag="--max-uploads", metavar="N", check=POSITIVE
    )
    #: Uploads in progress at once from one client address; past it, 429 + Retry-After.
    uploads_per_client: int = setting(
        256,
        "uploads in progress at once per client address",
        flag="--max-uploads-per-client",
        metavar="N",
        check=POSITIVE,
    )
    #: Seconds a streamed response may wait for the client to take data; past it, the
    #: connection is cut (a client that stops reading holds nothing longer).
    send_timeout: float = setting(
        30.0,
        "seconds a streamed response waits for the client to take data before the "
        "connection is cut",
        metavar="SECONDS",
        check=POSITIVE,
    )
    #: Bytes that the responses this process streams may hold at once (read buffers and
    #: send buffers); a stream that finds no room within 10 s gets 503 + Retry-After.
    stream_buffer: int = setting(
        64 * MiB,
        "bytes the streamed responses may hold at once",
        flag="--stream-buffer-bytes",
        kind="bytes",
        check=POSITIVE,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class TLS:
    """A process's TLS files (all optional, PEM)."""

    #: The certificate (chain) this process serves HTTPS with; with ``key``.
    cert: Path | None = setting(
        None,
        "serve HTTPS with this certificate (PEM)",
        flag="--tls-cert",
        metavar="PEM",
        check=FILE,
        shown="none: plain HTTP",
    )
    #: The private key of ``cert``.
    key: Path | None = setting(
        None, "the certificate's private key (PEM)", flag="--tls-key", metavar="PEM", check=FILE
    )
    #: The CA that signed the certificates of the processes this one talks to (the master
    #: checks its workers', a worker its master's); None: the system's CAs.
    ca: Path | None = setting(
        None,
        "CA certificate (PEM) that signed the certificates of the cluster's other processes",
        flag="--ca",
        metavar="PEM",
        check=FILE,
        shown="the system's CAs",
    )

    def __post_init__(self) -> None:
        _require(
            (self.cert is None) == (self.key is None),
            "--tls-cert and --tls-key: give both, or neither",
        )
        check_fields(self)


@dataclass(frozen=True)
class MasterConfig:
    """Settings of a master process (``kittenfs master``)."""

    #: Directory of the master's LevelDB index (created if missing).
    data: Path = setting(help="directory of the index (created if missing)", metavar="DIR")
    #: Where the index lives: LevelDB under ``data`` (the default), ``leveldb:DIR``, a
    #: PostgreSQL database, ``postgresql://USER@HOST:PORT/DB``, or a prefix of an etcd
    #: cluster, ``etcd://HOST:PORT[,HOST:PORT...]/PREFIX`` (master/index/engine.py).
    index: str = setting(
        "",
        "where the index lives: leveldb:DIR, postgresql://USER@HOST:PORT/DB or "
        "etcd://HOST:PORT[,HOST:PORT...]/PREFIX",
        metavar="URL",
        check=INDEX,
        shown="LevelDB in DATA/index",
    )
    #: Port to listen on; 0 picks a free one (the "listening on" log line tells which).
    port: int = setting(3000, "port to listen on; 0 picks a free one", check=_PORT)
    #: Address to listen on.
    host: str = setting("127.0.0.1", "address to listen on")
    #: Copies of each value; capped at the number of registered workers.
    replicas: int = setting(3, "copies of each value", metavar="N", check=AT_LEAST_ONE)
    #: Largest value accepted, in bytes; a larger body gets 413.
    max_value_bytes: int = setting(
        5 * GiB, "largest value accepted", kind="bytes", check=NOT_NEGATIVE
    )
    #: Seconds without a heartbeat after which a worker counts as down.
    down_after: float = setting(
        5.0,
        "seconds without a heartbeat before a worker is down",
        metavar="SECONDS",
        check=POSITIVE,
    )
    #: Seconds a replica may take no data, or not answer, before the write fails (503).
    replica_timeout: float = setting(
        30.0,
        "seconds a replica may stall before a write fails",
        metavar="SECONDS",
        check=POSITIVE,
    )
    #: Seconds a replaced version or a moved-away replica is kept for reads already sent to it.
    replaced_grace: float = setting(
        10.0,
        "seconds a replaced version or moved replica is kept for reads sent to it",
        metavar="SECONDS",
        check=NOT_NEGATIVE,
    )
    #: Start a rebalance on its own once the set of up workers has changed and then stayed
    #: the same for this many seconds; 0 turns it off.
    auto_rebalance: float = setting(
        0.0,
        "rebalance on its own once the up workers have changed and stayed the same "
        "for SECONDS (0: off)",
        metavar="SECONDS",
        check=NOT_NEGATIVE,
    )
    #: Bytes of recently read or written small values the master keeps and serves itself
    #: (0 turns it off): a hit answers in one round trip instead of a redirect.
    cache_bytes: int = setting(
        64 * MiB,
        "bytes of hot small values the master serves itself (0: off)",
        kind="bytes",
        check=NOT_NEGATIVE,
    )
    #: Values up to this size are served through the cache (when it is on).
    cache_value_max: int = setting(
        64 * KiB, "largest value the cache holds", kind="bytes", check=NOT_NEGATIVE
    )
    #: Time and concurrency limits of the HTTP server.
    limits: Limits = Limits()
    #: The cluster secret: workers must sign registrations, heartbeats and reports with it,
    #: and the master signs every call to a worker and every link it sends a client to.
    #: None only on a loopback address (docs/security.md).
    cluster_key: ClusterKey | None = _cluster_key("required off loopback")
    #: A bootstrap admin credential: ``Authorization: Bearer <this token>`` may do anything.
    #: Giving one turns auth on.
    admin_token: str | None = setting(
        None,
        "a bootstrap admin credential (16 characters or more); turns auth on",
        metavar="TOKEN",
        check=LONG_TOKEN,
        secret=True,
        shown="none",
    )
    #: What requests without credentials may do: "none", "read" or "write".  Giving it turns
    #: auth on; without it (and without an admin token) anyone may do anything.
    anonymous: str | None = setting(
        None,
        "what requests without credentials may do; turns auth on",
        choices=("none", "read", "write"),
        shown="none with an admin token, else anything",
    )
    #: TLS: serve HTTPS, and the CA of the workers' certificates.
    tls: TLS = TLS()
    #: URL by which clients reach this master; the links it hands out (a redirect's way back,
    #: ``kittenfs sign``) point there.  Default: the URL it listens on.
    advertise: str | None = setting(
        None,
        "URL by which clients reach this master, for the links it hands out",
        metavar="URL",
        check=URL,
        shown="the URL it listens on",
    )
    #: Serve the S3 API on this port too (0 picks a free one; the "serving the S3 API at" log line
    #: tells which); none by default.
    s3_port: int | None = setting(
        None, "serve the S3 API on this port too (0: a free one)", check=_PORT, shown="none"
    )
    #: An upload in parts (master/uploads.py) not touched for this many seconds (its start,
    #: or its last part) is deleted with its parts.
    upload_abandoned_after: float = setting(
        86400.0,
        "seconds after which an upload in parts (/_uploads) left untouched is deleted",
        metavar="SECONDS",
        check=POSITIVE,
    )
    #: An S3 multipart upload not completed this many seconds after it started is aborted
    #: and its parts deleted.
    s3_abandoned_after: float = setting(
        86400.0,
        "seconds after which an S3 multipart upload not completed is aborted",
        metavar="SECONDS",
        check=POSITIVE,
    )
    #: Domain of virtual-host-style S3 addressing: a request to ``<bucket>.<domain>`` names
    #: the bucket in its host.  Without it, only path-style (``/<bucket>/<key>``) works.
    s3_domain: str | None = setting(
        None,
        "domain of virtual-host-style S3 requests (<bucket>.<domain>)",
        metavar="DOMAIN",
        shown="path-style only",
    )
    #: Log one line per request.
    verbose: bool = setting(False, "log every request")
    #: How log lines are written: text, or one JSON object a line (docs/observability.md).
    log_format: str = setting(
        "text", "how log lines are written: text, or json (one object a line)", choices=FORMATS
    )

    def __post_init__(self) -> None:
        check_fields(self)
        _check_cluster_key(self.host, self.cluster_key)
        _require(
            is_loopback(self.host) or self.admin_token is not None or self.anonymous is not None,
            f"--host {self.host} is reachable from the network and auth is off: give an "
            "admin credential (--admin-token, or KITTENFS_ADMIN_TOKEN) or say what "
            "anyone may do with --anonymous none|read|write",
        )


#: A worker streams checked blobs in 1 MiB pieces (about 2 MiB a stream): it may hold more;
#: the master is a worker's one writer, so it may use all of the uploads.
WORKER_LIMITS = Limits(uploads_per_client=Limits.uploads, stream_buffer=256 * MiB)


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of a worker process (``kittenfs worker``)."""

    #: URL of the master, e.g. http://127.0.0.1:3000; or of each of the masters that share
    #: an index, comma-separated: the worker beats to every one.
    master: str = setting(
        help="URL of the master, e.g. http://127.0.0.1:3000 (masters sharing an index: "
        "each, comma-separated)",
        check=MASTERS,
    )
    #: Directory of the worker's blobs and LevelDB (created if missing).
    data: Path = setting(help="directory of the blobs (created if missing)", metavar="DIR")
    #: Port to listen on; 0 picks a free one.
    port: int = setting(3001, "port to listen on; 0 picks a free one", check=_PORT)
    #: Address to listen on.
    host: str = setting("127.0.0.1", "address to listen on")
    #: URL by which the master and clients reach this worker; default http://HOST:PORT.
    advertise: str | None = setting(
        None,
        "URL by which the master and clients reach this worker",
        metavar="URL",
        check=URL,
        shown="the URL it listens on",
    )
    #: Values up to this many bytes are kept in LevelDB, larger ones in files.
    inline_max: int = setting(
        64 * KiB,
        "values up to this size live in LevelDB, larger ones in files",
        kind="bytes",
        check=NOT_NEGATIVE,
    )
    #: Bytes of a read whose blocks are checked before the response starts: a damaged
    #: block among them sends the client to another replica; a later one cuts the response.
    verify_max: int = setting(
        16 * MiB,
        "bytes of a read checked before its response starts (the rest as it is sent)",
        kind="bytes",
        check=NOT_NEGATIVE,
    )
    #: Seconds between heartbeats to the master.
    heartbeat_interval: float = setting(
        1.0, "seconds between heartbeats to the master", metavar="SECONDS", check=POSITIVE
    )
    #: Bytes of values this worker may hold, 0 for no limit but the disk's; past it, writes
    #: are refused as on a full disk (507).
    capacity: int = setting(
        0,
        "bytes of values this worker may hold (0: the disk's limit)",
        flag="--capacity-bytes",
        kind="bytes",
        check=NOT_NEGATIVE,
    )
    #: Before its first registration, copy every blob of this worker (an index) first.
    clone_from: int | None = setting(
        None,
        "start as a copy of worker INDEX: copy its blobs, then register",
        metavar="INDEX",
        check=NOT_NEGATIVE,
        shown="none",
    )
    #: Bytes per second a clone copies; 0 means no limit.
    clone_rate: float = setting(
        0.0,
        "MB per second a clone copies (0: no limit)",
        metavar="MB/S",
        scale=1e6,
        check=NOT_NEGATIVE,
    )
    #: Bytes per second the background scrub reads to check stored values; 0 turns it off.
    scrub_rate: float = setting(
        4e6,
        "MB per second the background scrub reads (0: off)",
        metavar="MB/S",
        scale=1e6,
        check=NOT_NEGATIVE,
    )
    #: Seconds between two scrub passes.
    scrub_interval: float = setting(
        3600.0, "seconds between two scrub passes", metavar="SECONDS", check=NOT_NEGATIVE
    )
    #: Time and concurrency limits of the HTTP server.
    limits: Limits = WORKER_LIMITS
    #: The cluster secret, the master's own: only requests signed with it may write, delete
    #: or list, and blobs are served only on a link the master signed (or to the master).
    #: None only on a loopback address (docs/security.md).
    cluster_key: ClusterKey | None = _cluster_key("the master's own")
    #: Serve blobs to anyone who knows their id, without a link signed by the master.
    public_reads: bool = setting(
        False, "serve blobs to anyone who knows their id, without a link signed by the master"
    )
    #: TLS: serve HTTPS, and the CA of the master's (and other workers') certificates.
    tls: TLS = TLS()
    #: Log one line per request.
    verbose: bool = setting(False, "log every request")
    #: How log lines are written: text, or one JSON object a line (docs/observability.md).
    log_format: str = setting(
        "text", "how log lines are written: text, or json (one object a line)", choices=FORMATS
    )

    def __post_init__(self) -> None:
        check_fields(self)
        _check_cluster_key(self.host, self.cluster_key)


@dataclass(frozen=True)
class GatewayConfig:
    """Settings of an S3 gateway (``kittenfs s3``): the S3 API in a process of its own."""

    #: URL of the master, which must serve S3 itself (``--s3-port``): writes go there.
    master: str = setting(help="URL of the master, e.g. http://127.0.0.1:3000", check=URL)
    #: Port to listen on; 0 picks a free one.
    port: int = setting(9000, "port to listen on; 0 picks a free one", check=_PORT)
    #: Address to listen on.
    host: str = setting("127.0.0.1", "address to listen on")
    #: Domain of virtual-host-style requests, as the master's ``--s3-domain``.
    s3_domain: str | None = setting(
        None,
        "domain of virtual-host-style S3 requests (<bucket>.<domain>)",
        metavar="DOMAIN",
        shown="path-style only",
    )
    #: Seconds a credential's signing key is used before the master is asked again: a
    #: revoked credential works here this long at most.
    key_ttl: float = setting(
        10.0, "seconds a signing key is kept before asking the master again", check=POSITIVE
    )
    #: Time and concurrency limits of the HTTP server.
    limits: Limits = Limits()
    #: The cluster secret: the gateway reads the index and the workers as a member.
    cluster_key: ClusterKey | None = _cluster_key("the master's own")
    #: TLS: serve HTTPS, and the CA of the master's and the workers' certificates.
    tls: TLS = TLS()
    #: Log one line per request.
    verbose: bool = setting(False, "log every request")
    #: How log lines are written: text, or one JSON object a line (docs/observability.md).
    log_format: str = setting(
        "text", "how log lines are written: text, or json (one object a line)", choices=FORMATS
    )

    def __post_init__(self) -> None:
        check_fields(self)
        _check_cluster_key(self.host, self.cluster_key)


#: The URL a client talks to when none is given.
DEFAULT_URL = "http://127.0.0.1:3000"


@dataclass(frozen=True)
class ClientConfig:
    """Settings of the client commands (put, get, ls, ...): which master, as whom."""

    #: URL of the master.
    url: str = setting(DEFAULT_URL, "URL of the master", check=URL)
    #: Credential sent as ``Authorization: Bearer``.
    token: str | None = setting(None, "credential to send", secret=True, shown="none")
    #: CA that signed the cluster's TLS certificates; None: the system's CAs.
    ca: Path | None = setting(
        None,
        "CA certificate (PEM) that signed the cluster's TLS certificates",
        metavar="PEM",
        check=FILE,
        shown="the system's CAs",
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class UpConfig:
    """Settings of ``kittenfs up``, a local cluster (flags only: its children take theirs)."""

    #: Directory of all data: master/, worker-0/, ... and the cluster secret.
    data: Path = setting(Path("kittenfs-data"), "directory for all data", metavar="DIR", env=False)
    #: The master's port; worker i listens on port + 1 + i.
    port: int = setting(
        3000,
        "the master's port; the workers use the ports after it",
        check=between(1, 65535),
        env=False,
    )
    #: Workers to run.
    workers: int = setting(3, "number of workers", metavar="N", check=AT_LEAST_ONE, env=False)
    #: Copies of each value.
    replicas: int = setting(3, "copies of each value", metavar="N", check=AT_LEAST_ONE, env=False)
    #: Turn auth on: an admin token is made in the data directory and printed.
    auth: bool = setting(
        False,
        "turn auth on: an admin token is made in the data directory and printed; "
        "requests without it are refused",
        env=False,
    )
    #: Serve HTTPS, with certificates of a local CA made in the data directory.
    tls: bool = setting(
        False,
        "serve HTTPS, with certificates from a local CA made in the data directory (tls/ca.pem)",
        env=False,
    )
    #: The S3 API's port (docs/s3.md); None: 9000, or a free port if 9000 is taken.
    s3_port: int | None = setting(
        None,
        "port of the S3 API (default: 9000, or a free one when 9000 is taken)",
        check=between(1, 65535),
        shown="9000",
        env=False,
    )
    #: Where the index lives: LevelDB in the master's directory, a PostgreSQL server of
    #: the cluster's own (in DATA/postgres) or an etcd cluster of its own (three members,
    #: in DATA/etcd), shared by ``masters`` masters.
    index: str = setting(
        "leveldb",
        "where the index lives: leveldb (in the master's directory), postgres (a local "
        "PostgreSQL server in DATA/postgres) or etcd (a local 3-member etcd cluster in "
        "DATA/etcd); postgres and etcd are shared by several masters",
        choices=("leveldb", "postgres", "etcd"),
        env=False,
    )
    #: Masters to run (more than one needs a shared index); 0: 1, or 2 with a shared one.
    masters: int = setting(
        0,
        "number of masters (more than one needs --index postgres or etcd); master j > 0 "
        "listens after the workers",
        metavar="N",
        check=NOT_NEGATIVE,
        shown="1, or 2 with --index postgres or etcd",
        env=False,
    )
    #: Log one line per request.
    verbose: bool = setting(False, "log every request", env=False)
    #: How the children write their log lines (passed on as their --log-format).
    log_format: str = setting(
        "text",
        "how the children write log lines: text, or json (one object a line)",
        choices=FORMATS,
        env=False,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        shared = self.index in ("postgres", "etcd")
        if not self.masters:
            object.__setattr__(self, "masters", 2 if shared else 1)
        _require(
            self.masters == 1 or shared,
            f"--masters {self.masters}: several masters share an index: add --index postgres "
            "or --index etcd",
        )
        last = self.port + self.workers + self.masters - 1
        _require(
            last <= 65535,
            f"--port {self.port}: the masters and their {self.workers} workers need ports "
            f"{self.port}..{last}, all between 1 and 65535",
        )


@dataclass(frozen=True)
class RebuildConfig:
    """Settings of ``kittenfs rebuild`` (the workers' URLs are arguments)."""

    #: A new, empty directory for the master's index.
    data: Path = setting(help="new, empty data directory for the master", metavar="DIR", env=False)
    #: Where to write the index (the master's ``--index``): by default LevelDB in DATA/index.
    index: str = setting(
        "",
        "where to write the index: leveldb:DIR or postgresql://USER@HOST:PORT/DB (empty)",
        metavar="URL",
        check=INDEX,
        shown="LevelDB in DATA/index",
        env=False,
    )
    #: The cluster secret, to list the workers' blobs.
    cluster_key: ClusterKey | None = _cluster_key("to list the workers' blobs")


@dataclass(frozen=True)
class JobOptions:
    """Options of one job (rebalance, repair, drain, gc), sent with its start: the defaults
    here are the master's too, for a start that leaves one out.  The master checks them
    (400 naming the option), so they have no rule here."""

    #: Only report what the job would do.
    dry_run: bool = setting(False, "only report what it would do", env=False)
    #: Keys (gc: blobs) handled per second; 0 means no limit.
    rate: float = setting(
        0.0,
        "keys (gc: blobs) per second (0: no limit)",
        metavar="N",
        env=False,
    )
    #: Bytes per second copied (gc: freed); 0 means no limit.
    bandwidth: float = setting(
        0.0,
        "MB per second copied (gc: freed) (0: no limit)",
        metavar="MB/S",
        scale=1e6,
        env=False,
    )
    #: Keys handled at once (rebalance, repair, drain).
    concurrency: int = setting(4, "keys handled at once", metavar="N", env=False)
    #: gc only deletes orphans older than this many seconds.
    grace: float = setting(
        3600.0,
        "only delete orphans older than this many seconds",
        metavar="SECONDS",
        env=False,
    )
    #: gc also deletes every unlinked key.
    purge_unlinked: bool = setting(False, "also delete every unlinked key", env=False)
