"""Fixtures: ``cluster`` (and ``shared``, one per module) run a master and three workers.

Every process they start is stopped by PID at teardown.
"""

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cluster import Cluster, MakeCluster, started


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    """Return a factory of started clusters; every one is stopped at teardown."""
    made: list[Cluster] = []

    def make(**settings: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"c{len(made)}", **settings)
        made.append(cluster)
        return cluster.start()

    yield make
    for cluster in made:
        cluster.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster per test module, for tests that only touch keys of their own."""
    with started(tmp_path_factory.mktemp("shared")) as cluster:
        yield cluster


@pytest.fixture
def cluster(make_cluster: MakeCluster) -> Cluster:
    """A running master with three workers and three replicas."""
    return make_cluster()
