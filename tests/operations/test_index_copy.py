"""``kittenfs index copy``: a stopped master's index moved from LevelDB to PostgreSQL (or
etcd) and back, checked entry by entry, and the master serving the same keys and credentials
from the copy.  A running master's index, and a target that holds anything, are refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from cluster import Cluster, MakeCluster, run_kittenfs
from etcdserver import required_etcd
from pgserver import required_server

from kittenfs.master.index import open_index
from kittenfs.master.index.base import Entry

pytestmark = pytest.mark.own_engine  # its engines are its own: no second pass

ADMIN = "admin-" + os.urandom(12).hex()


def index_copy(source: str, target: str) -> subprocess.CompletedProcess[str]:
    return run_kittenfs("index", "copy", "--from", source, "--to", target, timeout=300)


def exported(spec: str) -> list[Entry]:
    async def read() -> list[Entry]:
        index = await open_index(spec, Path())
        try:
            return [entry async for entry in index.export()]
        finally:
            await index.close()

    return asyncio.run(read())


def use_index(cluster: Cluster, spec: str) -> None:
    """Start the stopped master again on the index ``spec`` (the same data directory, so
    the same master key)."""
    args = cluster.master.args
    if "--index" in args:
        args[args.index("--index") + 1] = spec
    else:
        args += ["--index", spec]
    cluster.master.start()
    cluster.wait_workers_up(3)


def new_index(engine: str) -> str:
    """Return the ``--index`` of a new, empty index on ``engine``."""
    return required_etcd().index() if engine == "etcd" else required_server().database()


@pytest.mark.parametrize("engine", ["postgresql", "etcd"])
def test_an_index_copied_to_a_shared_engine_and_back(
    make_cluster: MakeCluster, tmp_path: Path, engine: str
) -> None:
    cluster = make_cluster(token=ADMIN, index="")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    values = {f"/copy/{i}": os.urandom(100 + i * 20_000) for i in range(12)}
    with httpx.Client(base_url=cluster.url, headers=admin, timeout=60) as http:
        for key, value in values.items():
            assert http.put(key, content=value).status_code == 201
        assert http.request("UNLINK", "/copy/0").status_code == 204
        made = http.post("/_keys", json={"role": "read"})
        assert made.status_code == 201, made.text
        reader = made.json()["token"]
    source = f"leveldb:{cluster.root / 'master' / 'index'}"

    refused = index_copy(source, new_index(engine))
    assert refused.returncode == 1 and "Stop it first" in refused.stderr  # the master runs

    cluster.master.stop()
    database = new_index(engine)
    done = index_copy(source, database)
    assert done.returncode == 0, done.stderr
    assert "checked them entry by entry" in done.stdout
    assert exported(database) == exported(source)
    again = index_copy(source, database)
    assert again.returncode == 1 and "is not empty" in again.stderr

    use_index(cluster, database)
    with httpx.Client(base_url=cluster.url, timeout=60, follow_redirects=True) as http:
        for key, value in list(values.items())[1:]:
            assert http.get(key, headers=admin).content == value
        assert http.get("/copy/0", headers=admin).status_code == 404  # still unlinked
        assert http.get("/copy/1", headers={"Authorization": f"Bearer {reader}"}).status_code == 200
        assert http.put("/copy/new", content=engine.encode(), headers=admin).status_code == 201
    refused = index_copy(database, f"leveldb:{tmp_path / 'back'}")
    assert refused.returncode == 1 and "a master is using" in refused.stderr

    cluster.master.stop()
    back = f"leveldb:{tmp_path / 'back' / 'index'}"
    done = index_copy(database, back)
    assert done.returncode == 0, done.stderr
    assert exported(back) == exported(database)
    use_index(cluster, back)
    with httpx.Client(base_url=cluster.url, headers=admin, timeout=60) as http:
        assert http.get("/copy/new").content == engine.encode()
        assert http.get("/copy/5", follow_redirects=True).content == values["/copy/5"]


def test_a_copy_needs_two_indexes_it_can_name(tmp_path: Path) -> None:
    missing = index_copy(f"leveldb:{tmp_path / 'nothing'}", f"leveldb:{tmp_path / 'to'}")
    assert missing.returncode == 1 and "no such index" in missing.stderr
    assert not (tmp_path / "nothing").exists()  # not created by looking
    unnamed = index_copy(str(tmp_path), f"leveldb:{tmp_path / 'to'}")
    assert unnamed.returncode == 1 and "leveldb:DIR, postgresql://... or etcd://" in unnamed.stderr
