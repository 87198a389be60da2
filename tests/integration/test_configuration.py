"""Processes configured as a container configures them: by ``KITTENFS_*`` variables alone, or
by a config file, with real master and worker processes on free ports."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from started import Started

from kittenfs import Client

TOKEN = "t" * 24
SECRET = "s" * 32


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Started]:
    processes = Started(tmp_path)
    yield processes
    processes.stop()


def wait_workers_up(url: str, count: int, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        cluster: dict[str, Any] = httpx.get(f"{url}/_cluster", headers=headers, timeout=5).json()
        if sum(w["state"] == "up" for w in cluster["workers"]) >= count:
            return cluster
        assert time.monotonic() < deadline, cluster
        time.sleep(0.1)


def test_a_cluster_configured_by_environment_alone(started: Started, tmp_path: Path) -> None:
    secret = tmp_path / "cluster.secret"
    secret.write_text(SECRET + "\n")
    url = started.start(
        "master",
        {
            "KITTENFS_DATA": str(tmp_path / "master"),
            "KITTENFS_PORT": "0",
            "KITTENFS_HOST": "127.0.0.1",
            "KITTENFS_REPLICAS": "1",
            "KITTENFS_ADMIN_TOKEN": TOKEN,
            "KITTENFS_CLUSTER_SECRET_FILE": str(secret),
            "KITTENFS_CACHE_BYTES": "0",
        },
        "master",
    )
    assert not url.endswith(":3000")  # KITTENFS_PORT=0 took a free port
    worker = started.start(
        "worker",
        {
            "KITTENFS_MASTER": url,
            "KITTENFS_DATA": str(tmp_path / "worker"),
            "KITTENFS_PORT": "0",
            "KITTENFS_CLUSTER_SECRET": SECRET,  # the secret itself, as a container may hold it
            "KITTENFS_SCRUB_RATE": "0",
        },
        "worker",
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    cluster = wait_workers_up(url, 1, headers)
    assert cluster["replicas"] == 1
    assert [w["url"] for w in cluster["workers"]] == [worker]
    assert httpx.put(f"{url}/env/anonymous", content=b"x", timeout=10).status_code == 401
    with Client(url, token=TOKEN) as client:
        client.put("/env/key", b"by environment")
        assert client.get("/env/key") == b"by environment"


def test_a_config_file_under_the_environment_and_the_flags(
    started: Started, tmp_path: Path
) -> None:
    file = tmp_path / "kittenfs.toml"
    file.write_text(
        f'[master]\ndata = "{tmp_path / "master"}"\nport = 0\nreplicas = 1\n'
        f'[worker]\ndata = "{tmp_path / "worker"}"\nport = 0\nscrub-rate = 0\n'
    )
    url = started.start(
        "master", {"KITTENFS_CONFIG": str(file), "KITTENFS_REPLICAS": "2"}, "master"
    )
    started.start("worker", {}, "worker", "--config", str(file), "--master", url)
    cluster = wait_workers_up(url, 1, {})
    assert cluster["replicas"] == 2  # the variable over the file
    assert (tmp_path / "worker").is_dir()  # the file's data directory for the worker


def test_a_bad_variable_stops_the_process_before_it_touches_anything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITTENFS_")}
    env |= {"KITTENFS_DATA": str(tmp_path / "master"), "KITTENFS_DOWN_AFTER": "-1"}
    done = subprocess.run(
        [sys.executable, "-m", "kittenfs", "master"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.decode() == "error: KITTENFS_DOWN_AFTER=-1: must be positive\n"
    assert not (tmp_path / "master").exists()
