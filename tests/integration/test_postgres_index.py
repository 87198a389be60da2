"""A real cluster whose master keeps its index in PostgreSQL (``--index postgresql://``):
everything the master knows is in the database, so a master killed and started again, even
on an empty data directory (given the master key, a secret kept out of the database), serves
what was written; an engine that goes away fails
requests with a clear 503 and takes them again once it is back."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import httpx
import pytest
from cluster import run_kittenfs, started, wait_until
from pgserver import own_server, required_server

from kittenfs.master.index import open_index


def test_a_cluster_on_postgresql_keeps_everything_across_a_kill(tmp_path: Path) -> None:
    with started(tmp_path / "c", index="postgresql") as cluster:
        large = b"L" * 300_000
        assert httpx.put(f"{cluster.url}/d/small", content=b"tiny").status_code == 201
        assert httpx.put(f"{cluster.url}/d/large", content=large).status_code == 201
        assert httpx.put(f"{cluster.url}/d/gone", content=b"x").status_code == 201
        assert httpx.delete(f"{cluster.url}/d/gone").status_code == 204
        listed = httpx.get(f"{cluster.url}/d/", params={"list": ""}).json()
        assert listed["keys"] == ["/d/large", "/d/small"]

        cluster.master.kill()  # kill -9: nothing is flushed at exit
        # A fresh data directory: the database alone holds what the master knew, but the
        # master key is a secret that never goes into it, so a master without it is refused.
        fresh = tmp_path / "fresh-master"
        args = cluster.master.args
        args[args.index("--data") + 1] = str(fresh)
        with pytest.raises(RuntimeError, match="not the master key"):
            cluster.master.start()
        shutil.copy(cluster.root / "master" / "master.key", fresh / "master.key")
        cluster.master.start()
        cluster.wait_workers_up(3)
        assert httpx.get(f"{cluster.url}/d/small").content == b"tiny"
        assert httpx.get(f"{cluster.url}/d/large", follow_redirects=True).content == large
        assert httpx.get(f"{cluster.url}/d/gone").status_code == 404
        info = cluster.cluster_info()
        assert sorted(w["index"] for w in info["workers"]) == [0, 1, 2]


def test_an_engine_that_goes_away_fails_requests_clearly_until_it_is_back(
    tmp_path: Path,
) -> None:
    engine = own_server()
    try:
        url = engine.database()
        with started(tmp_path / "c", index=url) as cluster:
            assert httpx.put(f"{cluster.url}/before", content=b"kept").status_code == 201
            engine.halt()  # a fast shutdown: its connections are cut
            failed = httpx.put(f"{cluster.url}/during", content=b"lost?", timeout=120)
            assert failed.status_code == 503
            assert failed.json()["error"] == "index_unavailable"
            assert "cannot be reached" in failed.json()["detail"]
            assert httpx.get(f"{cluster.url}/before", timeout=120).status_code in (200, 503)
            engine.start()

            def writes_again() -> bool:
                return httpx.put(f"{cluster.url}/after", content=b"new").status_code == 201

            wait_until(writes_again, "writes to succeed once PostgreSQL is back")
            assert httpx.get(f"{cluster.url}/before").content == b"kept"
            assert httpx.get(f"{cluster.url}/after").content == b"new"
            assert httpx.get(f"{cluster.url}/during").status_code == 404
    finally:
        engine.remove()


def test_a_master_whose_engine_cannot_be_reached_says_so_and_exits(tmp_path: Path) -> None:
    done = run_kittenfs(
        "master",
        "--port",
        "0",
        "--data",
        str(tmp_path / "m"),
        "--index",
        "postgresql://kfs:s3cret@127.0.0.1:1/nowhere",
    )
    assert done.returncode != 0
    assert "--index" in done.stderr and "cannot be reached" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout  # the password is never shown


@pytest.mark.parametrize("bad", ["mysql://x/y", "/just/a/path"])
def test_an_index_no_engine_takes_is_refused(tmp_path: Path, bad: str) -> None:
    done = run_kittenfs("master", "--data", str(tmp_path), "--index", bad)
    assert done.returncode != 0
    assert "--index" in done.stderr


def test_a_database_that_cannot_hold_an_index_is_refused(tmp_path: Path) -> None:
    """A database that is not UTF8 (keys would not order as on LevelDB), or whose schema a
    newer kittenFS wrote, stops the master at start with a usage error saying which."""
    server = required_server()
    name = f"ascii_{os.getpid()}"
    server.sql(
        f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
        "TEMPLATE template0"
    )
    ascii_db = run_kittenfs("master", "--data", str(tmp_path / "a"), "--index", server.url(name))
    assert ascii_db.returncode == 2 and "must be UTF8" in ascii_db.stderr

    newer = server.database()

    async def migrate() -> None:
        await (await open_index(newer, tmp_path)).close()

    asyncio.run(migrate())
    server.sql(
        "UPDATE kfs_settings SET value = '999' WHERE name = 'schema'", newer.rsplit("/", 1)[1]
    )
    refused = run_kittenfs("master", "--data", str(tmp_path / "b"), "--index", newer)
    assert refused.returncode == 2 and "schema version 999 is newer" in refused.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["up", "--masters", "2"], "add --index postgres"),
        (["worker", "--master", "http://127.0.0.1:1,ftp://x"], "--master"),
    ],
)
def test_masters_given_wrongly_are_refused(tmp_path: Path, args: list[str], says: str) -> None:
    done = run_kittenfs(*args, "--data", str(tmp_path / "d"))
    assert done.returncode == 2 and says in done.stderr, done.stderr
