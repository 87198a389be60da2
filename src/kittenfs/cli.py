"""The ``kittenfs`` command: its sub-commands, global options and one format of errors.

Every setting's flag comes from the config classes (config.py, through settings.py).  Start-up
stays fast for the client commands: server modules, rich, the reliability suite and the
benchmark are imported only by the commands that use them (tests/unit/test_cli_imports.py).
Errors are one line on stderr, ``error: ...``; exit status 1 for a failure, 2 for bad usage
or a bad setting.
"""

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import __version__, settings
from .config import (
    ClientConfig,
    ConfigError,
    GatewayConfig,
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
#: Sub-commands whose arguments live with heavy modules, imported only when they are used:
#: name -> (help, module, its function that runs the command).
_HEAVY = {
    "nemesis": (
        "run the reliability suite: workload, faults, checker",
        "reliability.run",
        "run_nemesis",
    ),
    "soak": (
        "the resource soak: many small keys, then large values, with every process's "
        "memory sampled",
        "reliability.soak",
        "run_soak",
    ),
    "bench": ("benchmark kittenFS against nginx and the disk", "bench.suite", "run_benchmark"),
}
_JOBS = {
    "rebalance": "move every key's replicas to its preferred workers",
    "repair": "read every copy; replace missing and corrupt ones",
    "drain": "move every replica off WORKER (an index)",
    "gc": "delete bytes on workers that no index record points to",
}
#: The packages of the "server" extra; the client commands import none of them.
SERVER_PACKAGES = (
    "aiohttp",
    "plyvel",
    "asyncpg",
    "prometheus_client",
    "xxhash",
    "cryptography",
    "defusedxml",
    "crc32c",
)
#: The commands that run (or open) the servers, which need the "server" extra.
SERVER_COMMANDS = frozenset(
    {"master", "worker", "s3", "up", "rebuild", "index", "bench", "nemesis", "soak"}
)
_RED = "\033[31m"
_RESET = "\033[0m"


def missing_server_package() -> str | None:
    """Return a package of the server extra that is not installed, None if all are."""
    return next((name for name in SERVER_PACKAGES if importlib.util.find_spec(name) is None), None)


def error(message: str) -> None:
    """Print ``message`` as the command line's one kind of error line, on stderr."""
    colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    label = f"{_RED}error:{_RESET}" if colour else "error:"
    print(f"{label} {message}", file=sys.stderr, flush=True)


class Formatter(argparse.HelpFormatter):
    """argparse's help formatter, told the terminal's width so that it does not import shutil
    (and with it lzma and bz2) for every parser, as it does to find the width itself."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_columns())


def _columns() -> int:
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``error:`` line (exit status 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        error(f"{message} (see {self.prog} --help)")
        sys.exit(2)


def _master(args: argparse.Namespace) -> int:
    config = settings.resolve(MasterConfig, args)
    from .master.app import run

    run(config)
    return 0


def _gateway(args: argparse.Namespace) -> int:
    config = settings.resolve(GatewayConfig, args)
    from .s3.gateway import run

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

    from .errors import StoreError
    from .master.index.engine import describe
    from .rebuild import rebuild

    try:
        keys, stale = rebuild(config.data, args.worker, config.cluster_key, config.index)
    except (OSError, ValueError, httpx.HTTPError, StoreError) as exc:
        error(f"rebuild: {exc}")
        return 1
    where = describe(config.index, config.data)
    start = f"--data {config.data}" + (f" --index {where}" if config.index else "")
    print(
        f"rebuilt {keys} keys from {len(args.worker)} workers into {where}; "
        f"{stale} copies of older versions (or that disagree) were left in place for "
        f"`kittenfs gc`. Start the master with {start}."
    )
    return 0


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
        from . import commands

        handler: Callable[[argparse.Namespace], int] = getattr(commands, name)
        return handler(args)

    return run


def _skip_httpx_command_line() -> None:
    """Keep httpx from importing its own command line (click, rich and pygments: about 40%
    of its import time when click is installed, and 0.1 s of every server process's
    start), which kittenfs never uses; httpx falls back to a stub of it by design when it
    cannot be imported.  Only the command line does this: a program that imports kittenfs
    keeps its httpx whole."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def _client_flags(parser: argparse.ArgumentParser, json: bool = False) -> None:
    settings.add_flags(parser, ClientConfig)
    if json:
        parser.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON"
        )


def _client(
    parser: argparse.ArgumentParser, handler: str, json: bool = False, job: tuple[str, ...] = ()
) -> None:
    _client_flags(parser, json)
    parser.set_defaults(run=_client_command(handler, job))


def _job(name: str) -> Callable[[argparse.ArgumentParser], None]:
    def build(parser: argparse.ArgumentParser) -> None:
        if name == "drain":
            parser.add_argument("worker", type=int, help="the worker's index")
        names: tuple[str, ...] = ("dry_run", "rate", "bandwidth")
        names += ("grace", "purge_unlinked") if name == "gc" else ("concurrency",)
        settings.add_flags(parser, JobOptions, only=names)
        _client(parser, name, job=names)

    return build


def _server(cls: type, run: Callable[[argparse.Namespace], int], file: bool = True) -> Any:
    def build(parser: argparse.ArgumentParser) -> None:
        settings.add_flags(parser, cls, file=file)
        parser.set_defaults(run=run)

    return build


def _index_copy(args: argparse.Namespace) -> int:
    from pathlib import Path

    import plyvel

    from .master.index.copy import CopyError, copy_index
    from .master.index.engine import describe

    try:
        copied = copy_index(args.source, args.target)
    except CopyError as exc:
        error(f"index copy: {exc}")
        return 1
    except plyvel.Error as exc:
        error(f"index copy: {exc.args[0]!r}: is a master using it? Stop it first")
        return 1
    kinds = ", ".join(f"{n} {kind.name.lower()}" for kind, n in sorted(copied.kinds.items()))
    print(
        f"copied {copied.entries} entries ({kinds or 'none'}) from "
        f"{describe(args.source, Path())} to {describe(args.target, Path())}, "
        "and checked them entry by entry"
    )
    return 0


def _index_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    copy = _add(actions, "copy", "copy a stopped master's index to another engine, checked")
    copy.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="INDEX",
        help="leveldb:DIR, postgresql://... or etcd://HOST:PORT,.../PREFIX",
    )
    copy.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="INDEX",
        help="an empty index: leveldb:DIR (a new directory), postgresql://... or etcd://...",
    )
    copy.set_defaults(run=_index_copy)


def _rebuild_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_flags(parser, RebuildConfig)
    parser.add_argument(
        "--worker",
        action="append",
        required=True,
        metavar="URL",
        help="a worker's URL; give every worker (repeat the flag)",
    )
    parser.set_defaults(run=_rebuild)


def _heavy_arguments(name: str) -> Callable[[argparse.ArgumentParser], None]:
    def build(parser: argparse.ArgumentParser) -> None:
        _, module, runner = _HEAVY[name]
        loaded = importlib.import_module(f".{module}", __package__)
        loaded.add_arguments(parser)
        parser.set_defaults(run=getattr(loaded, runner))

    return build


def _put(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key")
    parser.add_argument("file", nargs="?", default="-", help="file to store, or - for stdin")
    _client(parser, "put")


def _get(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    _client(parser, "get")


def _rm(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key")
    _client(parser, "rm")


def _ls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefix", nargs="?", default="/", help="only keys under it (default /)")
    _client(parser, "ls")


def _key(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    create = _add(actions, "create", "create a credential; its secret is printed this once only")
    create.add_argument("--role", required=True, choices=("read", "write", "admin"))
    create.add_argument("--prefix", default="/", help="only keys under this prefix (default /)")
    create.add_argument(
        "--expires",
        metavar="DURATION",
        help="valid for this long: 90s, 30m, 12h, 30d, 2w (default: ever)",
    )
    _client(create, "key_create", json=True)
    _client(_add(actions, "list", "list the credentials (never their secrets)"), "key_list", True)
    revoke = _add(actions, "revoke", "revoke a credential")
    revoke.add_argument("access_key", metavar="ID", help="its access key")
    _client(revoke, "key_revoke")


def _sign(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key")
    parser.add_argument(
        "--expires",
        default="1h",
        metavar="DURATION",
        help="how long it works: 90s, 30m, 12h, 7d at most (default 1h)",
    )
    parser.add_argument("--method", default="GET", choices=("GET", "PUT"), help="(default GET)")
    _client(parser, "sign")


def _remove(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("worker", type=int, help="the worker's index")
    parser.add_argument(
        "--force",
        action="store_true",
        help="even if keys still name it (they become under-replicated)",
    )
    _client(parser, "remove")


_UP = _server(UpConfig, _up, file=False)
#: Every sub-command: its name, its one-line help, and what adds its arguments.
COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    ("master", "run the master (the index)", _server(MasterConfig, _master)),
    ("worker", "run a worker (stores values)", _server(WorkerConfig, _worker)),
    ("s3", "run an S3 gateway in front of a master", _server(GatewayConfig, _gateway)),
    ("up", "run a local cluster: one master and N workers, until Ctrl-C", _UP),
    ("rebuild", "rebuild a lost master index from the workers", _rebuild_arguments),
    ("index", "copy an index between engines (LevelDB, PostgreSQL, etcd)", _index_arguments),
    *((name, heavy[0], _heavy_arguments(name)) for name, heavy in _HEAVY.items()),
    ("put", "store a file (or stdin) as the value of KEY", _put),
    ("get", "print the value of KEY, or write it to a file", _get),
    ("rm", "delete KEY", _rm),
    ("ls", "list keys under PREFIX", _ls),
    ("status", "show the cluster's workers", lambda parser: _client(parser, "status")),
    *((name, help_text, _job(name)) for name, help_text in _JOBS.items()),
    ("key", "create, list and revoke credentials (admin)", _key),
    ("sign", "print a URL that lets anyone GET (or PUT) KEY until it expires", _sign),
    ("remove", "forget a stopped, drained WORKER (an index)", _remove),
)  # fmt: skip


def _add(into: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    description = help_text[0].upper() + help_text[1:] + "."
    made: argparse.ArgumentParser = into.add_parser(name, help=help_text, description=description)
    return made


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the parser of the sub-commands.  Only ``command``'s arguments are added when it
    is given (parsers are built at each start; this keeps a client command quick); every
    one's but the heavy ones' (nemesis, soak, bench) when it is None."""
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
    for name, help_text, build in COMMANDS:
        made = _add(sub, name, help_text)
        if command == name or (command is None and name not in _HEAVY):
            build(made)
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
    _skip_httpx_command_line()
    command = command_in(words)
    missing = missing_server_package() if command in SERVER_COMMANDS else None
    if missing:
        error(
            f"kittenfs {command} needs the server extra ({missing} is not installed): "
            "pip install 'kittenfs[server]'"
        )
        return 2
    args = build_parser(command).parse_args(words)
    if args.command != command:  # not found where command_in looked: parse with them all
        args = build_parser().parse_args(words)
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
