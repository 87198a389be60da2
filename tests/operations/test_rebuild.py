"""Rebuild: a lost master index is rebuilt from the workers, record by record the same."""

import asyncio
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cluster import Cluster, MakeCluster, Proc, run_kittenfs
from etcdserver import required_etcd
from pgserver import required_server

from kittenfs.master.index import Space, open_index
from kittenfs.records import IndexRecord


@dataclass
class Target:
    """Where a rebuild writes: a new data directory, and the index on the cluster's engine
    (``index`` "": LevelDB under ``data``; else a new PostgreSQL database or etcd prefix)."""

    data: Path
    index: str = ""


def new_target(cluster: Cluster, data: Path) -> Target:
    """Return an empty index on the engine ``cluster``'s master uses."""
    if cluster.index.startswith("etcd://"):
        return Target(data, required_etcd().index())
    return Target(data, required_server().database() if cluster.index else "")


def live_records(index: str, data: Path) -> dict[str, IndexRecord]:
    """Return the live records of the index ``index`` (``--index``) of a master's ``data``."""

    async def read() -> dict[str, IndexRecord]:
        opened = await open_index(index, data)
        try:
            return {r.key: r async for r in opened.records(Space.LIVE)}
        finally:
            await opened.close()

    return asyncio.run(read())


def rebuild(cluster: Cluster, into: Target, nodes: list[Proc]) -> subprocess.CompletedProcess[str]:
    """Run ``kittenfs rebuild`` of the index into ``into`` from ``nodes``' copies."""
    return run_kittenfs(
        "rebuild",
        "--data",
        str(into.data),
        *(["--index", into.index] if into.index else []),
        "--cluster-secret-file",
        str(cluster.root / "cluster.secret"),
        *[arg for node in nodes for arg in ("--worker", node.url)],
    )


def start_on(cluster: Cluster, rebuilt: Target) -> None:
    """The master's disk is lost: start it on the rebuilt index (and a data directory with
    nothing else in it)."""
    shutil.rmtree(cluster.root / "master")
    shutil.copytree(rebuilt.data, cluster.root / "master")
    if rebuilt.index:
        args = cluster.master.args
        args[args.index("--index") + 1] = rebuilt.index
    cluster.master.start()


@pytest.mark.parametrize("engine", ["as the suite runs", "etcd"])
def test_rebuild_restores_every_key_with_the_same_md5(
    make_cluster: MakeCluster, tmp_path: Path, engine: str
) -> None:
    """A rebuild into the suite's engine ($KFS_TEST_INDEX: LevelDB, or PostgreSQL in CI's
    second pass), and into etcd."""
    index = {"index": "etcd"} if engine == "etcd" else {}
    cluster = make_cluster(workers=4, master_args=["--replaced-grace", "0"], **index)
    values = {f"/rb/{i}": os.urandom(10 + i * 7000) for i in range(25)}
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        for key, value in values.items():
            assert http.put(key, content=value).status_code == 201
        for key in list(values)[:5]:  # overwritten: the old versions are garbage
            values[key] = os.urandom(3000)
            assert http.put(key, content=values[key]).status_code == 204
    cluster.master.stop()
    original = live_records(cluster.index, cluster.root / "master")
    target = new_target(cluster, tmp_path / "rebuilt")
    done = rebuild(cluster, target, cluster.nodes)
    assert done.returncode == 0, done.stderr
    assert "rebuilt 25 keys" in done.stdout
    rebuilt = live_records(target.index, target.data)
    assert rebuilt.keys() == original.keys()
    for key, record in original.items():
        again = rebuilt[key]
        assert (again.version, again.size, again.md5, set(again.replicas)) == (
            record.version,
            record.size,
            record.md5,
            set(record.replicas),
        ), key
    second = rebuild(cluster, target, cluster.nodes[:1])
    assert second.returncode == 1
    assert "exists" in second.stderr or "not empty" in second.stderr
    # The master's disk is lost: it starts on the rebuilt index, and every key reads back.
    start_on(cluster, target)
    cluster.wait_workers_up(4)
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for key, value in values.items():
            got = http.get(key)
            assert got.content == value and got.headers["content-md5"] == original[key].md5
        assert http.put("/rb/after", content=b"new").status_code == 201
