"""A real etcd for tests (kittenfs.localetcd): one single-member cluster per test process,
in a temporary directory on free ports of 127.0.0.1, stopped by PID at exit; clusters of
several members for the tests that kill them (``own_cluster``).

Each test gets a key prefix of its own (``EtcdServer.index``).
"""

from __future__ import annotations

import atexit
import itertools
import os
import tempfile
from pathlib import Path

from kittenfs.cluster import free_port_block
from kittenfs.localetcd import LocalEtcd, program


class EtcdServer(LocalEtcd):
    """A LocalEtcd in a new temporary directory, on free ports."""

    def __init__(self, members: int = 1) -> None:
        super().__init__(
            Path(tempfile.mkdtemp(prefix="kfs-etcd-")), free_port_block(2 * members), members
        )
        self._names = itertools.count()

    def index(self, prefix: str = "kfs") -> str:
        """Return the ``--index`` of a new, empty index on this cluster."""
        return self.url(f"{prefix}-{os.getpid()}-{next(self._names)}")


_SHARED: list[EtcdServer] = []


def _check_installed() -> None:
    import pytest

    if program() is None:
        if os.environ.get("KFS_REQUIRE_ETCD"):
            pytest.fail("etcd is not installed, and KFS_REQUIRE_ETCD is set")
        pytest.skip("etcd is not installed")


def required_etcd() -> EtcdServer:
    """Return this process's etcd, started the first time; skip the test if etcd is not
    installed, or fail it if $KFS_REQUIRE_ETCD says it must be (CI)."""
    _check_installed()
    if not _SHARED:
        server = EtcdServer()
        atexit.register(server.remove)
        _SHARED.append(server.start())
    return _SHARED[0]


def own_cluster(members: int = 3) -> EtcdServer:
    """Return a started etcd cluster of the caller's own (``remove`` it when done)."""
    _check_installed()
    server = EtcdServer(members)
    try:
        return server.start()
    except BaseException:
        server.remove()
        raise
