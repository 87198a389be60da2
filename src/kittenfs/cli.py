"""The ``kittenfs`` command: its sub-commands, global options and one format of errors.

Every setting's flag comes from the config classes (config.py, through settings.py).  Start-up
stays fast for the client commands: server modules, rich, the reliability suite and the
benchmark are imported only by the commands that use them (tests/unit/test_cli_imports.py).
Errors are one line on stderr, ``error: ...``; exit status 1 for a failure, 2 for bad usage
or a bad setting.
"""

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import __version__, settings
from .config import (
    ClientConfig,
    ConfigError,
    JobOptions,
    MasterConfig,
    RebuildConfig,
    UpConfig,
    WorkerConfig,
)

DESCRIPTION = (
    "kittenFS, an actually simple distributed key value store: run a master and workers "
    "(or `kittenfs up` for a local cluster), then put, get and list values."
)
EPILOG = (
    "Client options (--url, --token, --ca, --json) go before or after the command.  Every "
    "setting of master and worker can also be given as a KITTENFS_* environment variable or "
    "in a --config file; see docs/configuration.md."
)
#: Options of the top-level parser that take a value (to find the command in argv).
_GLOBAL_VALUES = frozenset({"--url", "--token", "--ca", settings.CONFIG_FLAG})
#: Sub-commands whose arguments live with heavy modules, imported only when they are used.
_HEAVY = {
    "nemesis": "run the reliability suite: workload, faults, checker",
    "soak": "the resource soak: many small keys, then large values, with every process's "
    "memory sampled",
    "bench": "benchmark kittenFS against nginx and the disk",
}
_JOBS = {
    "rebalance": "move every key's replicas to its preferred workers",
    "repair": "read every copy; replace missing and corrupt ones",
    "drain": "move every replica off WORKER (an index)",
    "gc": "delete bytes on workers that no index record points to",
}
_RED = "\033[31m"
_RESET = "\033[0m"


def error(message: str) -> None:
    """Print ``message`` as the command line's one kind of error line, on stderr."""
    colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    label = f"{_RED}error:{_RESET}" if colour else "error:"
    print(f"{label} {message}", file=sys.stderr, flush=True)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``error:`` line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        error(f"{message} (see {self.prog} --help)")
        sys.exit(2)


def _master(args: argparse.Namespace) -> int:
    config = settings.resolve(MasterConfig, args)
    from .master.app import run

    run(config)
    return 0


def _worker(args: argparse.Namespace) -> int:
    config = settings.resolve(WorkerConfig, args)
    from .worker.app import run

    run(config)
    return 0


def _up(args: argparse.Namespace) -> int:
    config = settings.resolve(UpConfig, args)
    from .cluster import run_local_cluster

    return run_local_cluster(config)


def _rebuild(args: argparse.Namespace) -> int:
    config = settings.resolve(RebuildConfig, args)
    import httpx

    from .rebuild import rebuild

    try:
        keys, stale = rebuild(config.data, args.worker, config.cluster_key)
    except (OSError, ValueError, httpx.HTTPError) as exc:
        error(f"rebuild: {exc}")
        return 1
    print(
        f"rebuilt {keys} keys from {len(args.worker)} workers into {config.data}/index; "
        f"{stale} copies of older versions (or that disagree) were left in place for "
        f"`kittenfs gc`. Start the master with --data {config.data}."
    )
    return 0


def _heavy(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if name == "nemesis":
            from .reliability.run import run_nemesis

            return run_nemesis(args)
        if name == "soak":
            from .reliability.soak import run_soak

            return run_soak(args)
        from .bench.suite import run_benchmark

        return run_benchmark(args)

    return run


def _add_heavy_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "nemesis":
        from .reliability.run import add_arguments as nemesis_arguments

        nemesis_arguments(parser)
    elif name == "soak":
        from .reliability.soak import add_arguments as soak_arguments

        soak_arguments(parser)
    else:
        from .bench.suite import add_arguments as bench_arguments

        bench_arguments(parser)


def _client_command(name: str, job: tuple[str, ...] = ()) -> Callable[[argparse.Namespace], int]:
    """Return the runner of client command ``name`` (a function of commands.py), which
    resolves the client's settings (and a job's options: the names in ``job``) first."""

    def run(args: argparse.Namespace) -> int:
        config = settings.resolve(ClientConfig, args)
        args.url, args.token, args.ca = config.url, config.token, config.ca
        args.json = getattr(args, "json", False)
        if job:
            options = settings.resolve(JobOptions, args)
            args.job_options = {field: getattr(options, field) for field in job}
        _skip_httpx_command_line()
        from . import commands

        handler: Callable[[argparse.Namespace], int] = getattr(commands, name)
        return handler(args)

    return run


def _skip_httpx_command_line() -> None:
    """Keep httpx from importing its own command line (click, rich and pygments: about 40%
    of its import time when click is installed), which kittenfs never uses; httpx falls
    back to a stub of it by design when it cannot be imported."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def _client_flags(parser: argparse.ArgumentParser, json: bool = False) -> None:
    settings.add_flags(parser, ClientConfig)
    if json:
        parser.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON"
        )


def _job_flags(parser: argparse.ArgumentParser, name: str) -> tuple[str, ...]:
    """Add the options of job ``name``; return their names."""
    names: tuple[str, ...] = ("dry_run", "rate", "bandwidth")
    names += ("grace", "purge_unlinked") if name == "gc" else ("concurrency",)
    settings.add_flags(parser, JobOptions, only=names)
    return names


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the parser of every sub-command; the heavy ones (nemesis, soak, bench) get
    their arguments only when ``command`` names them."""
    parser = Parser(prog="kittenfs", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"kittenfs {__version__}")
    _client_flags(parser, json=True)
    parser.add_argument(
        settings.CONFIG_FLAG,
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"read settings from this TOML file (env {settings.CONFIG_ENV})",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, into: Any = sub) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = into.add_parser(
            name, help=help_text, description=help_text[0].upper() + help_text[1:] + "."
        )
        return made

    master = add("master", "run the master (the index)")
    settings.add_flags(master, MasterConfig, file=True)
    master.set_defaults(run=_master)
    worker = add("worker", "run a worker (stores values)")
    settings.add_flags(worker, WorkerConfig, file=True)
    worker.set_defaults(run=_worker)
    up = add("up", "run a local cluster: one master and N workers, until Ctrl-C")
    settings.add_flags(up, UpConfig)
    up.set_defaults(run=_up)
    rebuild = add("rebuild", "rebuild a lost master index from the workers")
    settings.add_flags(rebuild, RebuildConfig)
    rebuild.add_argument(
        "--worker",
        action="append",
        required=True,
        metavar="URL",
        help="a worker's URL; give every worker (repeat the flag)",
    )
    rebuild.set_defaults(run=_rebuild)
    for name, help_text in _HEAVY.items():
        heavy = add(name, help_text)
        if command == name:
            _add_heavy_arguments(name, heavy)
        heavy.set_defaults(run=_heavy(name))

    def client(name: str, help_text: str, into: Any = sub, handler: str = "", json: bool = False,
               job: tuple[str, ...] = ()) -> argparse.ArgumentParser:  # fmt: skip
        made = add(name, help_text, into)
        _client_flags(made, json)
        made.set_defaults(run=_client_command(handler or name.replace("-", "_"), job))
        return made

    put = client("put", "store a file (or stdin) as the value of KEY")
    put.add_argument("key")
    put.add_argument("file", nargs="?", default="-", help="file to store, or - for stdin")
    get = client("get", "print the value of KEY, or write it to a file")
    get.add_argument("key")
    get.add_argument("-o", "--output", help="write to this file instead of stdout")
    rm = client("rm", "delete KEY")
    rm.add_argument("key")
    ls = client("ls", "list keys under PREFIX")
    ls.add_argument("prefix", nargs="?", default="/", help="only keys under it (default /)")
    client("status", "show the cluster's workers")
    for name, what in _JOBS.items():
        job = add(name, what)
        _client_flags(job)
        if name == "drain":
            job.add_argument("worker", type=int, help="the worker's index")
        job.set_defaults(run=_client_command(name, _job_flags(job, name)))
    key = add("key", "create, list and revoke credentials (admin)")
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    create = client(
        "create", "create a credential; its secret is printed this once only", key_sub,
        "key_create", json=True,
    )  # fmt: skip
    create.add_argument("--role", required=True, choices=("read", "write", "admin"))
    create.add_argument("--prefix", default="/", help="only keys under this prefix (default /)")
    create.add_argument(
        "--expires",
        metavar="DURATION",
        help="valid for this long: 90s, 30m, 12h, 30d, 2w (default: ever)",
    )
    client("list", "list the credentials (never their secrets)", key_sub, "key_list", json=True)
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
    sign.add_argument("--method", default="GET", choices=("GET", "PUT"), help="(default GET)")
    remove = client("remove", "forget a stopped, drained WORKER (an index)")
    remove.add_argument("worker", type=int, help="the worker's index")
    remove.add_argument(
        "--force",
        action="store_true",
        help="even if keys still name it (they become under-replicated)",
    )
    return parser


def command_in(argv: Sequence[str]) -> str | None:
    """Return the sub-command ``argv`` names (its first word that is no global option or
    an option's value), or None."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in _GLOBAL_VALUES:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def _quiet_broken_pipe() -> int:
    """Exit as a Unix filter does when its reader has gone (``kittenfs get K | head``):
    quietly, with 128 + SIGPIPE; stdout goes to /dev/null so the exit's flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(command_in(words)).parse_args(words)
    try:
        status: int = args.run(args)
    except ConfigError as exc:
        error(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    return status


if __name__ == "__main__":
    sys.exit(main())
