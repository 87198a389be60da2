"""A real PostgreSQL server for tests (kittenfs.localpg): one per test process, in a
temporary directory, on a free port of 127.0.0.1, stopped by PID at exit.

Each test gets a database of its own (``PostgresServer.database``).  fsync stays on: the
index's durability is what is under test.
"""

from __future__ import annotations

import atexit
import itertools
import os
import tempfile
from pathlib import Path

from kittenfs.cluster import free_port_block
from kittenfs.localpg import LocalPostgres, bindir


class PostgresServer(LocalPostgres):
    """A LocalPostgres in a new temporary directory, on a free port."""

    def __init__(self) -> None:
        super().__init__(Path(tempfile.mkdtemp(prefix="kfs-pg-")), free_port_block(1))
        self._names = itertools.count()

    def database(self, prefix: str = "kfs") -> str:
        """Create a new, empty database and return its URL."""
        return self.create_database(f"{prefix}_{os.getpid()}_{next(self._names)}")


_SHARED: list[PostgresServer] = []


def installed() -> bool:
    """Return True if PostgreSQL's programs are installed."""
    return bindir() is not None


def required_server() -> PostgresServer:
    """Return this process's PostgreSQL server, started the first time; skip the test if
    PostgreSQL is not installed, or fail it if $KFS_REQUIRE_POSTGRES says it must be (CI)."""
    import pytest

    if not installed():
        if os.environ.get("KFS_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is not installed, and KFS_REQUIRE_POSTGRES is set")
        pytest.skip("PostgreSQL is not installed")
    if not _SHARED:
        server = PostgresServer()
        atexit.register(server.remove)
        _SHARED.append(server.start())
    return _SHARED[0]


def own_server() -> PostgresServer:
    """Return a started PostgreSQL server of the caller's own (``remove`` it when done);
    skip or fail as ``required_server`` does if PostgreSQL is not installed."""
    required_server()
    return PostgresServer().start()
