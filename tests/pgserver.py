"""A real PostgreSQL server for tests: ``initdb`` in a temporary directory, started with
``pg_ctl`` on a free port of 127.0.0.1 (as the ``postgres`` user when the tests run as root,
which PostgreSQL refuses to run as), one per test process, stopped by PID at exit.

Each test gets a database of its own (``PostgresServer.database``).  fsync stays on: the
index's durability is what is under test.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cluster import wait_until


def bindir() -> Path | None:
    """Return the directory of the newest installed PostgreSQL's programs, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """One PostgreSQL server with its own data directory and port."""

    bin: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kfs-pg-")))
    port: int = field(default_factory=_free_port)
    pid: int = 0
    _names: itertools.count[int] = field(default_factory=itertools.count)

    def _as_owner(self, *argv: str | Path) -> list[str]:
        command = [str(a) for a in argv]
        return ["runuser", "-u", "postgres", "--", *command] if os.getuid() == 0 else command

    def start(self) -> PostgresServer:
        """Create the cluster (the first time) and start it; return once it accepts
        connections."""
        data = self.root / "data"
        if os.getuid() == 0:
            shutil.chown(self.root, "postgres")
        if not data.exists():
            subprocess.run(
                self._as_owner(
                    self.bin / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"
                ),
                check=True,
                capture_output=True,
            )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=400"
        )
        subprocess.run(
            self._as_owner(
                self.bin / "pg_ctl",
                "-D",
                data,
                "-o",
                options,
                "-l",
                self.root / "log",
                "-w",
                "start",
            ),
            check=True,
            capture_output=True,
        )
        self.pid = int((data / "postmaster.pid").read_text().split()[0])
        return self

    @property
    def url(self) -> str:
        """The URL of the server's default database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database(self, prefix: str = "kfs") -> str:
        """Create a new, empty database and return its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one SQL statement through psql; return its output, unaligned."""
        done = subprocess.run(
            [
                str(self.bin / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                statement,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def halt(self, sig: int = signal.SIGINT) -> None:
        """Stop the server by its postmaster's PID (a fast shutdown: every connection is
        cut), keeping its data for a later ``start``."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            wait_until(lambda: not _alive(self.pid), "PostgreSQL to stop", 60)
            self.pid = 0

    def stop(self) -> None:
        """Stop the server at once and remove its directory."""
        self.halt(signal.SIGQUIT)
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


_SHARED: list[PostgresServer] = []


def shared_server() -> PostgresServer | None:
    """Return this process's PostgreSQL server, starting it the first time (None if
    PostgreSQL is not installed)."""
    if not _SHARED:
        programs = bindir()
        if programs is None:
            return None
        server = PostgresServer(programs)
        atexit.register(server.stop)
        _SHARED.append(server.start())
    return _SHARED[0]


def required_server() -> PostgresServer:
    """Return this process's PostgreSQL server; skip the test if PostgreSQL is not
    installed, or fail it if $KFS_REQUIRE_POSTGRES says it must be (CI)."""
    import pytest

    server = shared_server()
    if server is None:
        if os.environ.get("KFS_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is not installed, and KFS_REQUIRE_POSTGRES is set")
        pytest.skip("PostgreSQL is not installed")
    return server
