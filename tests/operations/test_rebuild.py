"""Rebuild: a lost master index is rebuilt from the workers, record by record the same."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import plyvel
from cluster import Cluster, MakeCluster, Proc

from kittenfs.records import IndexRecord, decode


def live_records(index_dir: Path) -> dict[str, IndexRecord]:
    db = plyvel.DB(str(index_dir))
    try:
        return {
            r.key: r for r in (decode(IndexRecord, raw) for _, raw in db.iterator(prefix=b"k:"))
        }
    finally:
        db.close()


def rebuild(cluster: Cluster, into: Path, nodes: list[Proc]) -> subprocess.CompletedProcess[str]:
    """Run ``kittenfs rebuild`` of the index into ``into`` from ``nodes``' copies."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "kittenfs",
            "rebuild",
            "--data",
            str(into),
            "--cluster-secret-file",
            str(cluster.root / "cluster.secret"),
            *[arg for node in nodes for arg in ("--worker", node.url)],
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_rebuild_restores_every_key_with_the_same_md5(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    cluster = make_cluster(workers=4, master_args=["--replaced-grace", "0"])
    values = {f"/rb/{i}": os.urandom(10 + i * 7000) for i in range(25)}
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        for key, value in values.items():
            assert http.put(key, content=value).status_code == 201
        for key in list(values)[:5]:  # overwritten: the old versions are garbage
            values[key] = os.urandom(3000)
            assert http.put(key, content=values[key]).status_code == 204
    cluster.master.stop()
    original = live_records(cluster.root / "master" / "index")
    rebuilt_dir = tmp_path / "rebuilt"
    done = rebuild(cluster, rebuilt_dir, cluster.nodes)
    assert done.returncode == 0, done.stderr
    assert "rebuilt 25 keys" in done.stdout
    rebuilt = live_records(rebuilt_dir / "index")
    assert rebuilt.keys() == original.keys()
    for key, record in original.items():
        again = rebuilt[key]
        assert (again.version, again.size, again.md5, set(again.replicas)) == (
            record.version,
            record.size,
            record.md5,
            set(record.replicas),
        ), key
    second = rebuild(cluster, rebuilt_dir, cluster.nodes[:1])
    assert second.returncode == 1 and "exists" in second.stderr
    # The master's disk is lost: it starts on the rebuilt index, and every key reads back.
    shutil.rmtree(cluster.root / "master")
    shutil.copytree(rebuilt_dir, cluster.root / "master")
    cluster.master.start()
    cluster.wait_workers_up(4)
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for key, value in values.items():
            got = http.get(key)
            assert got.content == value and got.headers["content-md5"] == original[key].md5
        assert http.put("/rb/after", content=b"new").status_code == 201
