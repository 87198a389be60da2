"""A PostgreSQL server of our own, for ``kittenfs up --index postgres`` and the tests:
``initdb`` in a directory, started with ``pg_ctl`` on a port of 127.0.0.1, trusting local
connections only (it listens on loopback alone), fsync on.

PostgreSQL refuses to run as root, so as root its programs run as the ``postgres`` user
(Debian's ``postgresql`` package makes it), who must own the directory.  The programs are
those of the newest PostgreSQL under /usr/lib/postgresql (Debian's layout), else on PATH.
"""

import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from .pids import stop

#: Seconds to wait for the server to stop.
STOP_TIMEOUT = 60.0


class PostgresMissing(RuntimeError):
    """PostgreSQL's programs are not installed."""


def home_for(data: Path) -> Path:
    """Return where a server for the data directory ``data`` keeps its files:
    ``data/postgres``, or, as root when the ``postgres`` user cannot reach ``data`` (a
    directory under /root, say), a directory of its own under the postgres user's home,
    named after ``data``."""
    wanted = data / "postgres"
    if os.getuid() != 0:
        return wanted
    data.mkdir(parents=True, exist_ok=True)
    reach = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(data)])
    if reach.returncode == 0:
        return wanted
    digest = hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:16]
    return Path(pwd.getpwnam("postgres").pw_dir) / "kittenfs" / digest


def bindir() -> Path | None:
    """Return the directory of the newest installed PostgreSQL's programs, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class LocalPostgres:
    """One PostgreSQL server with its data under ``root`` (made if missing), on ``port``."""

    def __init__(self, root: Path, port: int) -> None:
        programs = bindir()
        if programs is None:
            raise PostgresMissing(
                "PostgreSQL is not installed (on Debian: apt-get install postgresql)"
            )
        self.bin = programs
        self.root = root
        self.port = port
        self.pid = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _as_owner(self, *argv: str | Path) -> list[str]:
        command = [str(a) for a in argv]
        return ["runuser", "-u", "postgres", "--", *command] if os.getuid() == 0 else command

    def start(self) -> Self:
        """Create the cluster (the first time) and start it; return once it takes
        connections.  Raise subprocess.CalledProcessError, with PostgreSQL's own words in
        its output, if it cannot."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            shutil.chown(self.root, "postgres")
        if not self.data.exists():
            subprocess.run(
                self._as_owner(
                    self.bin / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                    "-E", "UTF8",
                ),
                check=True,
                capture_output=True,
            )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=400"
        )
        subprocess.run(
            self._as_owner(
                self.bin / "pg_ctl", "-D", self.data, "-o", options, "-l", self.root / "log",
                "-w", "start",
            ),
            check=True,
            capture_output=True,
        )  # fmt: skip
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def url(self, database: str = "postgres") -> str:
        """The URL of one of the server's databases."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; return its URL."""
        exists = self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists:
            self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one SQL statement through psql; return its output, unaligned."""
        done = subprocess.run(
            [
                str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", statement,
            ],
            check=True,
            capture_output=True,
            text=True,
        )  # fmt: skip
        return done.stdout.strip()

    def halt(self, sig: int = signal.SIGINT) -> None:
        """Stop the server by its postmaster's PID (SIGINT: a fast shutdown, every
        connection cut; SIGQUIT: at once), keeping its data for a later ``start``."""
        if not self.pid:
            return
        stop(self.pid, sig, STOP_TIMEOUT)
        self.pid = 0

    def remove(self) -> None:
        """Stop the server at once (SIGQUIT) and remove its files."""
        self.halt(signal.SIGQUIT)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def temporary_postgres(port: int) -> Iterator[LocalPostgres]:
    """Yield a server started in a new temporary directory on ``port``; stop it and remove
    its files when the block ends."""
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="kfs-pg-")), port)
    try:
        yield server.start()
    finally:
        server.remove()
