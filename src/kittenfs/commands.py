"""Client subcommands of the CLI: put, get, rm, ls, status, and the jobs rebalance and repair.

Errors print one line to stderr and exit 1 (2 for bad usage); large transfers show a
progress bar when stderr is a terminal.  rich (tables, progress bars) is imported only by
the commands that draw one, to keep ``kittenfs get`` and ``ls`` quick to start.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

from .cli import error
from .client import CHUNK, Client
from .errors import KittenError

if TYPE_CHECKING:
    from rich.console import Console

#: Transfers at least this large show a progress bar.
PROGRESS_FROM = 8 * 1024 * 1024
#: Failures to reach a server at all (nothing listens there, or no answer in time).
UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)


def _fail(message: str) -> int:
    error(message)
    return 1


def _console(stderr: bool = False) -> "Console":
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=stderr)


def _unreachable(exc: KittenError, url: str) -> bool:
    return isinstance(exc.__cause__, UNREACHABLE) and url.rstrip("/") in str(exc)


def _client(args: argparse.Namespace) -> Client:
    """Return a client of the master the command's flags name, with their credential."""
    return Client(args.url, token=args.token, ca=args.ca)


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except KittenError as exc:
            if _unreachable(exc, args.url):
                return _fail(f"{exc}; is kittenFS running there? `kittenfs up` starts one here")
            return _fail(str(exc))
        except BrokenPipeError:
            raise  # the reader has gone (`kittenfs get KEY | head`): main exits quietly
        except OSError as exc:
            return _fail(f"{exc.filename or ''} {exc.strerror or exc}".strip())
        except ValueError as exc:  # a bad duration
            return _fail(str(exc))

    run.__doc__ = command.__doc__
    return run


@contextmanager
def _progress(total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """Yield a callback that advances a progress bar (shown only for big transfers on a TTY)."""
    if total is None or total < PROGRESS_FROM or not sys.stderr.isatty():
        yield lambda _: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        "{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


class _Counting:
    """A binary file wrapper that reports each read to a callback."""

    def __init__(self, handle: IO[bytes], advance: Callable[[int], None]) -> None:
        self.handle, self.advance = handle, advance

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.advance(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


@_guarded
def put(args: argparse.Namespace) -> int:
    """kittenfs put KEY [FILE|-]"""
    with _client(args) as client:
        if args.file == "-":
            md5 = client.put(args.key, sys.stdin.buffer)
        else:
            path = Path(args.file)
            with path.open("rb") as handle, _progress(path.stat().st_size, "put") as advance:
                md5 = client.put(args.key, _Counting(handle, advance))
    print(md5)
    return 0


@_guarded
def get(args: argparse.Namespace) -> int:
    """kittenfs get KEY [-o FILE]"""
    with _client(args) as client, client.open(args.key) as reader:
        target = open(args.output, "wb") if args.output else nullcontext(sys.stdout.buffer)  # noqa: SIM115
        with target as out, _progress(reader.size, "get") as advance:
            while chunk := reader.read(CHUNK):
                out.write(chunk)
                advance(len(chunk))
    return 0


@_guarded
def rm(args: argparse.Namespace) -> int:
    """kittenfs rm KEY"""
    with _client(args) as client:
        client.delete(args.key)
    return 0


@_guarded
def ls(args: argparse.Namespace) -> int:
    """kittenfs ls [PREFIX]"""
    with _client(args) as client:
        for key in client.list(args.prefix):
            print(key)
    return 0


@_guarded
def status(args: argparse.Namespace) -> int:
    """kittenfs status"""
    with _client(args) as client:
        cluster = client.cluster(keys=True)
    keys = cluster["keys"]
    from rich.table import Table

    table = Table(
        title=f"kittenFS {args.url}: master {cluster['master']['id']}, "
        f"{cluster['replicas']} replicas",
        caption=f"{keys['live']} keys ({keys['unlinked']} unlinked): "
        f"{keys['under_replicated']} under-replicated, "
        f"{keys['misplaced']} misplaced",
    )
    for column in ("index", "url", "state", "keys", "used", "free"):
        table.add_column(column, justify="right" if column in ("keys", "used", "free") else "left")
    for worker in cluster["workers"]:
        state = "[green]up[/green]" if worker["state"] == "up" else "[red]down[/red]"
        if worker["draining"]:
            state += " [yellow]draining[/yellow]"
        table.add_row(
            str(worker["index"]),
            worker["url"],
            state,
            str(worker["key_count"]),
            _size(worker["bytes_used"]),
            _size(worker["free_bytes"]),
        )
    _console().print(table)
    running = cluster["jobs"]["running"]
    if running:
        print(
            f"running: {running['kind']} {running['id']}, "
            f"{running['items_done']}/{running['items_total']} keys"
        )
    return 0


@_guarded
def rebalance(args: argparse.Namespace) -> int:
    """kittenfs rebalance [--dry-run] [--rate N] [--bandwidth MB/s]"""
    return _run_job(args, lambda client, options: client.start_job("rebalance", **options))


@_guarded
def repair(args: argparse.Namespace) -> int:
    """kittenfs repair [--dry-run] [--rate N] [--bandwidth MB/s]"""
    return _run_job(args, lambda client, options: client.start_job("repair", **options))


@_guarded
def drain(args: argparse.Namespace) -> int:
    """kittenfs drain WORKER"""
    return _run_job(args, lambda client, options: client.drain(args.worker, **options))


@_guarded
def gc(args: argparse.Namespace) -> int:
    """kittenfs gc [--grace SECONDS] [--purge-unlinked] [--dry-run]"""
    return _run_job(args, lambda client, options: client.start_job("gc", **options))


@_guarded
def key_create(args: argparse.Namespace) -> int:
    """kittenfs key create --role ROLE [--prefix P] [--expires D] [--json]"""
    from .credentials import parse_duration

    expires = parse_duration(args.expires) if args.expires else None
    with _client(args) as client:
        created = client.create_key(args.role, args.prefix, expires)
    if args.json:
        print(json.dumps(created, indent=2))
        return 0
    print(
        f"access key: {created['access_key']}\nsecret key: {created['secret_key']}\n"
        f"token:      {created['token']}\n({created['role']} on {created['prefix']}"
        f"{_expiry(created['expires_ms'])}; the secret is not shown again)"
    )
    return 0


@_guarded
def key_list(args: argparse.Namespace) -> int:
    """kittenfs key list [--json]"""
    with _client(args) as client:
        keys = client.keys()
    if args.json:
        print(json.dumps(keys, indent=2))
        return 0
    from rich.table import Table

    table = Table(title=f"{len(keys)} credentials")
    for column in ("access key", "role", "prefix", "expires", "created"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key["access_key"],
            key["role"],
            key["prefix"],
            _when(key["expires_ms"]) if key["expires_ms"] else "never",
            _when(key["created_ms"]),
        )
    _console().print(table)
    return 0


@_guarded
def key_revoke(args: argparse.Namespace) -> int:
    """kittenfs key revoke ID"""
    with _client(args) as client:
        client.revoke_key(args.access_key)
    print(f"revoked {args.access_key}")
    return 0


@_guarded
def sign(args: argparse.Namespace) -> int:
    """kittenfs sign KEY [--expires D] [--method GET|PUT]"""
    from .credentials import parse_duration

    with _client(args) as client:
        print(client.sign(args.key, args.method, parse_duration(args.expires)))
    return 0


def _expiry(expires_ms: int | None) -> str:
    return f", expires {_when(expires_ms)}" if expires_ms else ", never expires"


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


@_guarded
def remove(args: argparse.Namespace) -> int:
    """kittenfs remove WORKER [--force]"""
    with _client(args) as client:
        client.remove_worker(args.worker, args.force)
    print(f"worker {args.worker} removed")
    return 0


def _run_job(
    args: argparse.Namespace, begin: Callable[[Client, dict[str, Any]], dict[str, Any]]
) -> int:
    """Start a job on the master, show its progress until it ends, then what it found and did.

    Ctrl-C cancels the job.  Exit 0 if it finished with no errors and no lost keys.
    """
    options: dict[str, Any] = args.job_options
    with _client(args) as client:
        job = begin(client, options)
        try:
            job = _follow(client, job)
        except KeyboardInterrupt:
            client.cancel_job(job["id"])
            raise
    from rich.table import Table

    table = Table(
        title=f"{job['kind']} {job['id']}: {job['state']} in {job['elapsed_s']:.1f} s, "
        f"{job['items_done']}/{job['items_total']} keys, "
        f"{_size(job['bytes_done'])} copied" + (" (dry run)" if options["dry_run"] else "")
    )
    table.add_column("found")
    table.add_column("keys or copies", justify="right")
    for name, count in sorted(job["found"].items()):
        table.add_row(name, str(count))
    for name, count in sorted(job["fixed"].items()):
        table.add_row(f"fixed: {name}", str(count))
    _console().print(table)
    for problem in job["errors"][:10]:
        error(problem)
    healthy = not job["errors"] and not job["found"].get("lost")
    return 0 if job["state"] == "done" and healthy else 1


def _follow(client: Client, job: dict[str, Any]) -> dict[str, Any]:
    """Poll a job until it ends, with a progress bar (keys, bytes, ETA) on a terminal."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[copied]}"),
        TimeRemainingColumn(),
    )
    bar = Progress(
        *columns, console=_console(stderr=True), transient=True, disable=not sys.stderr.isatty()
    )
    with bar:
        task = bar.add_task(job["kind"], total=job["items_total"] or None, copied="")
        while job["state"] == "running":
            time.sleep(0.5)
            job = client.job(job["id"])
            bar.update(
                task,
                completed=job["items_done"],
                total=job["items_total"] or None,
                copied=f"{_size(job['bytes_done'])} copied",
            )
    return job


def _size(value: int | None) -> str:
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)
