"""The ``kittenfs`` command: run the processes; put, get, list and inspect values; operate,
benchmark and test the cluster."""

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import TLS, WORKER_LIMITS, ConfigError, GiB, Limits, MasterConfig, WorkerConfig
from .signing import BadSecret, ClusterKey

DEFAULT_URL = "http://127.0.0.1:3000"
#: The environment variable that may hold the cluster secret itself.
SECRET_ENV = "KITTENFS_CLUSTER_SECRET"
#: The environment variable that may hold the master's bootstrap admin token.
ADMIN_ENV = "KITTENFS_ADMIN_TOKEN"
#: The environment variable that holds a client's credential.
TOKEN_ENV = "KITTENFS_TOKEN"
#: The packages of the "server" extra; the client commands import none of them.
SERVER_PACKAGES = ("aiohttp", "plyvel", "prometheus_client", "xxhash", "cryptography")
#: The commands that run (or open) the servers, which need the "server" extra.
SERVER_COMMANDS = frozenset({"master", "worker", "up", "rebuild", "bench", "nemesis", "soak"})


def missing_server_package() -> str | None:
    """Return a package of the server extra that is not installed, None if all are."""
    return next((name for name in SERVER_PACKAGES if importlib.util.find_spec(name) is None), None)


def cluster_key(args: argparse.Namespace) -> ClusterKey | None:
    """Return the cluster secret's keys from ``--cluster-secret-file`` or, without it, from
    $KITTENFS_CLUSTER_SECRET; None if neither is given."""
    if args.cluster_secret_file:
        try:
            text = Path(args.cluster_secret_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--cluster-secret-file {args.cluster_secret_file}: {exc}") from None
        where = f"--cluster-secret-file {args.cluster_secret_file}"
    elif os.environ.get(SECRET_ENV):
        text, where = os.environ[SECRET_ENV], f"${SECRET_ENV}"
    else:
        return None
    try:
        return ClusterKey.from_text(text)
    except BadSecret as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _tls(args: argparse.Namespace) -> TLS:
    return TLS(
        *(Path(value) if value else None for value in (args.tls_cert, args.tls_key, args.ca))
    )


def _add_tls(parser: argparse.ArgumentParser, peers: str) -> None:
    parser.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    parser.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    parser.add_argument(
        "--ca",
        metavar="PEM",
        help=f"CA certificate that signed the {peers}' certificates (default: the system's CAs)",
    )


def _add_cluster_secret(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster-secret-file",
        metavar="PATH",
        help=f"the cluster secret, shared by the master and its workers "
        f"(default ${SECRET_ENV}); one per line during a rotation",
    )


def _master(args: argparse.Namespace) -> int:
    from . import limits
    from .master.app import run

    run(
        MasterConfig(
            data=Path(args.data),
            port=args.port,
            host=args.host,
            replicas=args.replicas,
            max_value_bytes=args.max_value_bytes,
            down_after=args.down_after,
            replica_timeout=args.replica_timeout,
            replaced_grace=args.replaced_grace,
            auto_rebalance=args.auto_rebalance,
            cache_bytes=args.cache_bytes,
            cache_value_max=args.cache_value_max,
            limits=limits.from_arguments(args),
            cluster_key=cluster_key(args),
            admin_token=args.admin_token or os.environ.get(ADMIN_ENV) or None,
            anonymous=args.anonymous,
            tls=_tls(args),
            advertise=args.advertise,
            verbose=args.verbose,
        )
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from . import limits
    from .worker.app import run

    run(
        WorkerConfig(
            master=args.master,
            data=Path(args.data),
            port=args.port,
            host=args.host,
            advertise=args.advertise,
            inline_max=args.inline_max,
            verify_max=args.verify_max,
            heartbeat_interval=args.heartbeat_interval,
            capacity=args.capacity_bytes,
            clone_from=args.clone_from,
            clone_rate=args.clone_rate * 1e6,
            scrub_rate=args.scrub_rate * 1e6,
            scrub_interval=args.scrub_interval,
            limits=limits.from_arguments(args),
            cluster_key=cluster_key(args),
            public_reads=args.public_reads,
            tls=_tls(args),
            verbose=args.verbose,
        )
    )
    return 0


def _up(args: argparse.Namespace) -> int:
    from .cluster import run_local_cluster

    return run_local_cluster(
        Path(args.data), args.port, args.workers, args.replicas, args.verbose, args.auth, args.tls
    )


def _bench(args: argparse.Namespace) -> int:
    from .bench.suite import run_benchmark

    return run_benchmark(args)


def _rebuild(args: argparse.Namespace) -> int:
    import httpx

    from .rebuild import rebuild

    try:
        keys, stale = rebuild(Path(args.data), args.worker, cluster_key(args))
    except (OSError, ValueError, httpx.HTTPError) as exc:
        print(f"kittenfs rebuild: {exc}", file=sys.stderr)
        return 1
    print(
        f"rebuilt {keys} keys from {len(args.worker)} workers into {args.data}/index; "
        f"{stale} copies of older versions (or that disagree) were left in place for "
        f"`kittenfs gc`. Start the master with --data {args.data}."
    )
    return 0


def _nemesis(args: argparse.Namespace) -> int:
    from .reliability.run import run_nemesis

    return run_nemesis(args)


def _soak(args: argparse.Namespace) -> int:
    from .reliability.soak import run_soak

    return run_soak(args)


def _client_command(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from . import commands

        handler: Callable[[argparse.Namespace], int] = getattr(commands, name)
        return handler(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="kittenfs", description=__doc__)
    # Without the server extra the server commands get no flags (main refuses to run them).
    server = missing_server_package() is None
    if server:
        from . import limits
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    master = sub.add_parser("master", help="run the master (the index)")
    master.add_argument("--port", type=int, default=3000, help="port (0 picks a free one)")
    master.add_argument("--host", default="127.0.0.1", help="address to listen on")
    master.add_argument(
        "--advertise",
        metavar="URL",
        help="URL clients use to reach this master, for the links it hands "
        "out (default: the URL it listens on)",
    )
    master.add_argument("--data", required=True, help="directory of the index")
    master.add_argument("--replicas", type=int, default=3, help="copies of each value")
    master.add_argument(
        "--max-value-bytes",
        type=int,
        default=5 * GiB,
        help="largest value accepted (default 5 GiB)",
    )
    master.add_argument(
        "--down-after",
        type=float,
        default=5.0,
        help="seconds without heartbeat before a worker is down",
    )
    master.add_argument(
        "--replica-timeout",
        type=float,
        default=30.0,
        help="seconds a replica may stall before a write fails",
    )
    master.add_argument(
        "--replaced-grace",
        type=float,
        default=MasterConfig.replaced_grace,
        help="seconds a replaced version or moved replica is kept (default 10)",
    )
    master.add_argument(
        "--auto-rebalance",
        type=float,
        default=0,
        metavar="SECONDS",
        help="rebalance on its own once the up workers have changed and stayed "
        "the same for SECONDS (default 0: off)",
    )
    master.add_argument(
        "--cache-bytes",
        type=int,
        default=MasterConfig.cache_bytes,
        help="bytes of hot small values the master serves itself (default 64 MiB; 0: off)",
    )
    master.add_argument(
        "--cache-value-max", type=int, default=64 * 1024, help="largest value the cache holds"
    )
    if server:
        limits.add_arguments(master, Limits())
    _add_cluster_secret(master)
    _add_tls(master, "workers")
    master.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help=f"a bootstrap admin credential (default ${ADMIN_ENV}); turns auth on",
    )
    master.add_argument(
        "--anonymous",
        choices=("none", "read", "write"),
        help="what requests without credentials may do; turns auth on "
        "(default: none when there is an admin token, else anything)",
    )
    master.add_argument("--verbose", action="store_true", help="log every request")
    master.set_defaults(run=_master)

    worker = sub.add_parser("worker", help="run a worker (stores values)")
    worker.add_argument("--master", required=True, help="master URL, e.g. http://127.0.0.1:3000")
    worker.add_argument("--port", type=int, default=3001, help="port (0 picks a free one)")
    worker.add_argument("--host", default="127.0.0.1", help="address to listen on")
    worker.add_argument("--data", required=True, help="directory of the blobs")
    worker.add_argument("--advertise", help="URL the master and clients use to reach this worker")
    worker.add_argument(
        "--inline-max", type=int, default=64 * 1024, help="values up to this size live in LevelDB"
    )
    worker.add_argument(
        "--verify-max",
        type=int,
        default=WorkerConfig.verify_max,
        help="bytes of a read checked before its response starts (the rest "
        "as it is sent; default 16 MiB)",
    )
    worker.add_argument(
        "--heartbeat-interval",
        type=float,
        default=1.0,
        help="seconds between heartbeats to the master",
    )
    worker.add_argument(
        "--capacity-bytes",
        type=int,
        default=0,
        help="bytes of values this worker may hold (default 0: the disk's limit)",
    )
    worker.add_argument(
        "--clone-from",
        type=int,
        metavar="INDEX",
        help="start as a copy of worker INDEX: copy its blobs over HTTP, then "
        "register and have the master reference the copies",
    )
    worker.add_argument(
        "--clone-rate",
        type=float,
        default=0,
        help="MB per second a clone copies (default 0: no limit)",
    )
    worker.add_argument(
        "--scrub-rate",
        type=float,
        default=WorkerConfig.scrub_rate / 1e6,  # 4 MB/s
        help="MB per second the background scrub reads (0: off)",
    )
    worker.add_argument(
        "--scrub-interval",
        type=float,
        default=WorkerConfig.scrub_interval,
        help="seconds between two scrub passes (default 3600)",
    )
    if server:
        limits.add_arguments(worker, WORKER_LIMITS)
    _add_cluster_secret(worker)
    _add_tls(worker, "master's (and other workers)")
    worker.add_argument(
        "--public-reads",
        action="store_true",
        help="serve blobs to anyone who knows their id, without a link signed by the master",
    )
    worker.add_argument("--verbose", action="store_true", help="log every request")
    worker.set_defaults(run=_worker)

    up = sub.add_parser("up", help="run a local cluster: one master and N workers")
    up.add_argument("--workers", type=int, default=3, help="number of workers")
    up.add_argument("--replicas", type=int, default=3, help="copies of each value")
    up.add_argument("--port", type=int, default=3000, help="master port; workers use the next")
    up.add_argument("--data", default="./kittenfs-data", help="directory for all data")
    up.add_argument(
        "--auth",
        action="store_true",
        help="turn auth on: an admin token is made in the data directory and "
        "printed; requests without it are refused",
    )
    up.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS, with certificates from a local CA made in the data "
        "directory (tls/ca.pem)",
    )
    up.add_argument("--verbose", action="store_true", help="log every request")
    up.set_defaults(run=_up)

    rebuild = sub.add_parser("rebuild", help="rebuild a lost master index from the workers")
    rebuild.add_argument("--data", required=True, help="new, empty data directory for the master")
    rebuild.add_argument(
        "--worker",
        action="append",
        required=True,
        metavar="URL",
        help="a worker's URL; give every worker (repeat the flag)",
    )
    _add_cluster_secret(rebuild)
    rebuild.set_defaults(run=_rebuild)

    nemesis = sub.add_parser("nemesis", help="run the reliability suite: workload, faults, checker")
    if server:
        from .reliability.run import add_arguments as nemesis_arguments

        nemesis_arguments(nemesis)
    nemesis.set_defaults(run=_nemesis)

    soak = sub.add_parser(
        "soak",
        help="the resource soak: many small keys, then large values, "
        "with every process's memory sampled",
    )
    if server:
        from .reliability.soak import add_arguments as soak_arguments

        soak_arguments(soak)
    soak.set_defaults(run=_soak)

    bench = sub.add_parser("bench", help="benchmark kittenFS against nginx and the disk")
    if server:
        from .bench.suite import add_arguments

        add_arguments(bench)
    bench.set_defaults(run=_bench)

    url_help = f"master URL (default $KITTENFS_URL or {DEFAULT_URL})"
    default_url = os.environ.get("KITTENFS_URL", DEFAULT_URL)

    def client(
        name: str, help_text: str, into: Any = sub, handler: str | None = None
    ) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = into.add_parser(name, help=help_text)
        command.add_argument("--url", default=default_url, help=url_help)
        command.add_argument(
            "--token",
            default=os.environ.get(TOKEN_ENV),
            help=f"credential to send (default ${TOKEN_ENV})",
        )
        command.add_argument(
            "--ca", metavar="PEM", help="CA certificate that signed the cluster's TLS certificates"
        )
        command.set_defaults(run=_client_command(handler or name.replace("-", "_")))
        return command

    put = client("put", "store a file (or stdin) as the value of KEY")
    put.add_argument("key")
    put.add_argument("file", nargs="?", default="-", help="file to store, or - for stdin")
    get = client("get", "print the value of KEY, or write it to a file")
    get.add_argument("key")
    get.add_argument("-o", "--output", help="write to this file instead of stdout")
    rm = client("rm", "delete KEY")
    rm.add_argument("key")
    ls = client("ls", "list keys under PREFIX")
    ls.add_argument("prefix", nargs="?", default="/")
    client("status", "show the cluster's workers")
    for name, what in (
        ("rebalance", "move every key's replicas to its preferred workers"),
        ("repair", "read every copy; replace missing and corrupt ones"),
        ("drain", "move every replica off WORKER (an index)"),
        ("gc", "delete bytes on workers that no index record points to"),
    ):
        job = client(name, what)
        if name == "drain":
            job.add_argument("worker", type=int)
        if name == "gc":
            job.add_argument(
                "--grace",
                type=float,
                default=3600,
                help="only delete orphans older than this many seconds",
            )
            job.add_argument(
                "--purge-unlinked", action="store_true", help="also delete every unlinked key"
            )
        job.add_argument("--dry-run", action="store_true", help="only report what it would do")
        job.add_argument("--rate", type=float, default=0, help="keys per second (0: no limit)")
        job.add_argument(
            "--bandwidth", type=float, default=0, help="MB per second copied (0: no limit)"
        )
        if name != "gc":
            job.add_argument("--concurrency", type=int, default=4, help="keys handled at once")
    key = sub.add_parser("key", help="create, list and revoke credentials (admin)")
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    create = client(
        "create", "create a credential; its secret is printed this once only", key_sub, "key_create"
    )
    create.add_argument("--role", required=True, choices=("read", "write", "admin"))
    create.add_argument("--prefix", default="/", help="only keys under this prefix")
    create.add_argument(
        "--expires",
        metavar="DURATION",
        help="valid for this long: 90s, 30m, 12h, 30d, 2w (default: ever)",
    )
    create.add_argument(
        "--json", action="store_true", help="print {access_key, secret_key, token, ...} as JSON"
    )
    listing = client("list", "list the credentials (never their secrets)", key_sub, "key_list")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = client("revoke", "revoke a credential", key_sub, "key_revoke")
    revoke.add_argument("access_key", metavar="ID", help="its access key")
    sign = client("sign", "print a URL that lets anyone GET (or PUT) KEY until it expires")
    sign.add_argument("key")
    sign.add_argument(
        "--expires",
        default="1h",
        metavar="DURATION",
        help="how long it works: 90s, 30m, 12h, 7d at most (default 1h)",
    )
    sign.add_argument("--method", default="GET", choices=("GET", "PUT"))
    remove = client("remove", "forget a stopped, drained WORKER (an index)")
    remove.add_argument("worker", type=int)
    remove.add_argument(
        "--force",
        action="store_true",
        help="even if keys still name it (they become under-replicated)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    words = sys.argv[1:] if argv is None else list(argv)
    command = next((word for word in words if not word.startswith("-")), "")
    missing = missing_server_package() if command in SERVER_COMMANDS else None
    if missing:
        print(
            f"kittenfs {command}: needs the server extra ({missing} is not installed): "
            "pip install 'kittenfs[server]'",
            file=sys.stderr,
        )
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
    except ConfigError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
