"""Placement: golden values and rendezvous-hashing properties.

GOLDEN: the literals below were computed once with the placement code as written.  A change
to any of them means the code now maps keys to different hashes, replicas, blob ids or paths,
which orphans every stored blob (workers would look for files that are not there and the
master would ask the wrong workers).  Never "fix" a golden value: write a migration instead.
"""

import itertools
import random

import pytest

from kittenfs.placement import (
    blob_id,
    blob_relpath,
    is_blob_id,
    key_hash,
    new_version,
    rank,
)

NODES = ["w0", "w1", "w2", "w3", "w4"]
WORKER_IDS = [
    "w-0a1b2c3d4e5f",
    "w-1234567890ab",
    "w-deadbeef0001",
    "w-feedface0002",
    "w-c0ffee000003",
]


# --- golden values: a change here orphans every stored blob -------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("/cats/tom.jpg", "c58603a40a88be17e8ca2438d6a85681"),
        ("/", "8a5edab282632443219e051e4ade2d1d"),
        ("/ñ/é", "d6b948da8a6f6d7ee9c57e55cb9a0d6b"),
        ("/a/b/c?d", "4f9c61c4562adc268963b3b41b28eac5"),
    ],
)
def test_key_hash_golden(key: str, expected: str) -> None:
    # GOLDEN: a change here orphans every stored blob.
    assert key_hash(key) == expected


@pytest.mark.parametrize(
    ("key", "nodes", "expected"),
    [
        ("/cats/tom.jpg", NODES, ["w2", "w4", "w3", "w1", "w0"]),
        ("/", NODES, ["w2", "w1", "w4", "w3", "w0"]),
        ("/ñ/é", NODES, ["w4", "w1", "w2", "w3", "w0"]),
        ("/a/b/c?d", NODES, ["w3", "w2", "w4", "w1", "w0"]),
        (
            "/cats/tom.jpg",
            WORKER_IDS,
            [
                "w-deadbeef0001",
                "w-0a1b2c3d4e5f",
                "w-feedface0002",
                "w-1234567890ab",
                "w-c0ffee000003",
            ],
        ),
        (
            "/ñ/é",
            WORKER_IDS,
            [
                "w-1234567890ab",
                "w-c0ffee000003",
                "w-deadbeef0001",
                "w-feedface0002",
                "w-0a1b2c3d4e5f",
            ],
        ),
    ],
)
def test_rank_golden(key: str, nodes: list[str], expected: list[str]) -> None:
    # GOLDEN: a change here sends new writes of every key to other workers than its copies.
    assert rank(key, nodes) == expected


def test_new_version_golden() -> None:
    # GOLDEN: a change here breaks version ordering (later writes must get larger ids).
    assert new_version(1_700_000_000_123_456_789, b"\x01\x02\x03\x04") == "17979cfe3d85cd1501020304"
    assert new_version(0, b"\x00\x00\x00\x00") == "000000000000000000000000"
    assert new_version(2**64 - 1, b"\xff\xff\xff\xff") == "ffffffffffffffffffffffff"


def test_blob_id_and_relpath_golden() -> None:
    # GOLDEN: a change here orphans every stored blob.
    version = new_version(1_700_000_000_123_456_789, b"\x01\x02\x03\x04")
    blob = blob_id("/cats/tom.jpg", version)
    assert blob == "c58603a40a88be17e8ca2438d6a85681-17979cfe3d85cd1501020304"
    assert blob_relpath(blob) == ("c5/86/c58603a40a88be17e8ca2438d6a85681-17979cfe3d85cd1501020304")


# --- new_version / blob ids ---------------------------------------------------------------


def test_new_version_shape_and_order() -> None:
    a = new_version()
    assert len(a) == 24 and all(c in "0123456789abcdef" for c in a)
    # Later clock readings sort later, whatever the entropy.
    assert new_version(1000, b"\xff" * 4) < new_version(1001, b"\x00" * 4)
    # Without fixed entropy, two versions at the same instant still differ (random tail).
    assert len({new_version(5) for _ in range(20)}) > 1
    assert all(v.startswith("0000000000000005") for v in {new_version(5) for _ in range(5)})


def test_blob_id_of_fresh_version_is_a_blob_id() -> None:
    blob = blob_id("/x", new_version())
    assert is_blob_id(blob)
    assert blob.startswith(key_hash("/x") + "-")


@pytest.mark.parametrize(
    "text",
    [
        "c58603a40a88be17e8ca2438d6a85681-17979cfe3d85cd1501020304",
        "0" * 32 + "-" + "f" * 24,
    ],
)
def test_is_blob_id_accepts(text: str) -> None:
    assert is_blob_id(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-",
        "c58603a40a88be17e8ca2438d6a85681",  # no version
        "c58603a40a88be17e8ca2438d6a85681-",  # empty version
        "c58603a40a88be17e8ca2438d6a8568-17979cfe3d85cd1501020304",  # 31-digit hash
        "c58603a40a88be17e8ca2438d6a856810-17979cfe3d85cd1501020304",  # 33-digit hash
        "c58603a40a88be17e8ca2438d6a85681-17979cfe3d85cd150102030",  # 23-digit version
        "c58603a40a88be17e8ca2438d6a85681-17979cfe3d85cd15010203040",  # 25-digit version
        "C58603A40A88BE17E8CA2438D6A85681-17979CFE3D85CD1501020304",  # upper case
        "g58603a40a88be17e8ca2438d6a85681-17979cfe3d85cd1501020304",  # not hex
        "c58603a40a88be17e8ca2438d6a85681_17979cfe3d85cd1501020304",  # wrong separator
        "c58603a40a88be17e8ca2438d6a85681-17979cfe3d85cd15010203-4",  # second dash
        "../../../../../../../../etc/passwd-aaaaaaaaaaaaaaaaaaaaaaaa",
        "c58603a40a88be17e8ca2438d6a8568/-17979cfe3d85cd1501020304",  # path separator
        "c58603a40a88be17e8ca2438d6a8568١-17979cfe3d85cd1501020304",  # non-ASCII digit
    ],
)
def test_is_blob_id_rejects(text: str) -> None:
    assert not is_blob_id(text)


# --- rank properties ----------------------------------------------------------------------


def test_rank_is_a_permutation() -> None:
    for i in range(200):
        key = f"/perm/{i}"
        ranked = rank(key, NODES)
        assert sorted(ranked) == sorted(NODES)
        assert len(ranked) == len(NODES)


def test_rank_of_empty_and_single() -> None:
    assert rank("/k", []) == []
    assert rank("/k", ["only"]) == ["only"]


def test_rank_is_deterministic_and_independent_of_input_order() -> None:
    rng = random.Random(1)
    for i in range(100):
        key = f"/order/{i}"
        expected = rank(key, NODES)
        assert rank(key, NODES) == expected
        shuffled = NODES[:]
        rng.shuffle(shuffled)
        assert rank(key, shuffled) == expected
        assert rank(key, iter(shuffled)) == expected  # any iterable, consumed once
        assert rank(key, set(NODES)) == expected


def test_rank_depends_on_key() -> None:
    # Different keys spread over every node as first choice.
    firsts = {rank(f"/spread/{i}", NODES)[0] for i in range(200)}
    assert firsts == set(NODES)


def test_rank_first_choice_is_balanced() -> None:
    counts = dict.fromkeys(NODES, 0)
    for i in range(5000):
        counts[rank(f"/bal/{i}", NODES)[0]] += 1
    for count in counts.values():
        assert 800 < count < 1200  # 1000 expected each


R = 3
N_KEYS = 3000


def test_adding_a_node_moves_about_r_over_n_of_the_keys() -> None:
    old_nodes = [f"w{i}" for i in range(5)]
    new_nodes = [*old_nodes, "w5"]
    changed = 0
    for i in range(N_KEYS):
        key = f"/rebalance/{i}"
        before = set(rank(key, old_nodes)[:R])
        after = set(rank(key, new_nodes)[:R])
        if before != after:
            changed += 1
    # R/N = 3/6 = 0.5 of the keys gain the new node in their top 3 (measured: ~0.51).
    assert 0.45 <= changed / N_KEYS <= 0.75


def test_keys_that_move_only_move_onto_the_new_node() -> None:
    old_nodes = [f"w{i}" for i in range(5)]
    new_nodes = [*old_nodes, "w5"]
    for i in range(N_KEYS):
        key = f"/rebalance/{i}"
        before = rank(key, old_nodes)
        after = rank(key, new_nodes)
        # The old nodes keep their relative order: adding a node never reshuffles the rest.
        assert [n for n in after if n != "w5"] == before
        gained = set(after[:R]) - set(before[:R])
        assert gained <= {"w5"}
        if gained:
            # Exactly one replica moves: the old third choice gives its place to the new node.
            assert set(before[:R]) - set(after[:R]) == {before[R - 1]}


def test_removing_a_node_only_moves_keys_it_held() -> None:
    nodes = [f"w{i}" for i in range(6)]
    remaining = [n for n in nodes if n != "w3"]
    for i in range(1000):
        key = f"/remove/{i}"
        before = rank(key, nodes)[:R]
        after = rank(key, remaining)[:R]
        if "w3" not in before:
            assert after == before
        else:
            assert set(before) - {"w3"} <= set(after)


def test_every_subset_ranks_consistently() -> None:
    # Rendezvous hashing: the ranking of any subset is the full ranking filtered.
    full = rank("/subset", NODES)
    for size in range(1, len(NODES) + 1):
        for subset in itertools.combinations(NODES, size):
            assert rank("/subset", subset) == [n for n in full if n in subset]
