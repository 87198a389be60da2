"""Fixtures: ``cluster`` (and ``shared``, one per module) run a master and three workers.

Every process they start is stopped by PID at teardown.
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cluster import Cluster


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[type[Cluster]]:
    """Return a factory of started clusters; every one is stopped at teardown."""
    started: list[Cluster] = []

    def make(**kwargs: object) -> Cluster:
        cluster = Cluster(tmp_path / f"c{len(started)}", **kwargs)  # type: ignore[arg-type]
        started.append(cluster)
        return cluster.start()

    yield make  # type: ignore[misc]
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster per test module, for tests that only touch keys of their own."""
    cluster = Cluster(tmp_path_factory.mktemp("shared"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def cluster(make_cluster) -> Cluster:  # type: ignore[no-untyped-def]
    """A running master with three workers and three replicas."""
    return make_cluster()
