"""Which engine holds the index: ``--index`` parsed, and the index opened.

- ``""`` (the default): LevelDB in the master's data directory (``DATA/index``);
- ``leveldb:DIR``: LevelDB in ``DIR``;
- ``postgresql://USER@HOST:PORT/DB`` (or ``postgres://``): PostgreSQL (postgres.py); the
  password comes best from ``PGPASSWORD`` or ``~/.pgpass``, which asyncpg reads, so that it
  shows in no process list;
- ``etcd://HOST:PORT[,HOST:PORT...]/PREFIX``: etcd (etcd.py), the index under ``PREFIX/``.
"""

import os
from pathlib import Path

from ...config import ConfigError
from ...errors import IndexUnavailable
from .base import Index
from .leveldb import LevelDBIndex

#: The schemes of a PostgreSQL index's URL.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
#: The scheme of an etcd index's URL.
ETCD_SCHEME = "etcd://"
#: The prefixes of every index that ``--index`` and ``kittenfs index copy`` take.
SPECS = ("leveldb:", *POSTGRES_SCHEMES, ETCD_SCHEME)


def describe(spec: str, data: Path) -> str:
    """Return ``spec`` as the master's log shows it: the LevelDB path, or the URL without
    its password."""
    if spec.startswith(POSTGRES_SCHEMES):
        from .postgres import redact

        return redact(spec)
    if spec.startswith(ETCD_SCHEME):
        return spec
    return f"leveldb:{leveldb_path(spec, data)}"


def leveldb_path(spec: str, data: Path) -> Path:
    """Return the directory of a LevelDB index named by ``spec``."""
    return Path(spec.removeprefix("leveldb:")) if spec else data / "index"


async def open_index(spec: str, data: Path, owner: str = "") -> Index:
    """Open the index ``spec`` names (``data`` is the master's data directory, ``owner`` the
    id of the master that will use it: its writes in flight carry it).

    Raise ConfigError, saying why, if no engine takes ``spec``, the engine cannot be
    reached, or its database cannot hold an index."""
    if spec.startswith(POSTGRES_SCHEMES):
        from .postgres import PostgresIndex  # asyncpg is loaded only by those who use it

        try:
            return await PostgresIndex.open(spec, owner)
        except (IndexUnavailable, ValueError) as exc:
            raise ConfigError(f"--index: {exc}") from None
    if spec.startswith(ETCD_SCHEME):
        from .etcd import EtcdIndex  # gRPC is loaded only by those who use it

        try:
            return await EtcdIndex.open(spec, owner)
        except (IndexUnavailable, ValueError) as exc:
            raise ConfigError(f"--index: {exc}") from None
    if spec and not spec.startswith("leveldb:"):
        raise ConfigError(f"--index {spec}: not leveldb:DIR, postgresql://... or etcd://...")
    path = leveldb_path(spec, data)
    os.makedirs(path.parent, exist_ok=True)  # LevelDB creates only its own directory
    return LevelDBIndex(str(path), owner)
