"""``kittenfs bench --quick`` runs end to end and writes a valid JSON report (no speed asserted).

The S3 phases and the SeaweedFS peer have tests of their own (test_bench_s3.py)."""

import json
import subprocess
import sys
from pathlib import Path

from cluster import Cluster


def test_quick_bench_runs_and_reports_json(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kittenfs",
            "bench",
            "--quick",
            "--no-install",
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert set(data) == {"meta", "phases", "references", "ratios", "notes"}
    names = {p["name"] for p in data["phases"] if p["target"] == "kittenfs"}
    for expected in (
        "small PUT c1",
        "small GET c16",
        "small DELETE c64",
        "thrasher cycle c16",
        "mixed 90/10 zipf c16",
        "large PUT 16MiB c4",
        "large GET 16MiB c16",
        "list 1000 keys",
        "S3 small PUT c16",
        "S3 small GET c16",
        "S3 large PUT 10MiB multipart c4",
        "S3 large GET 10MiB c4",
    ):
        assert expected in names
    for phase in data["phases"]:
        assert phase["errors"] == 0, phase["error_samples"]
        assert phase["count"] > 0 and phase["ops_s"] > 0
        assert phase["p50_ms"] <= phase["p99_ms"] <= phase["p999_ms"] <= phase["max_ms"]
        if phase["target"] == "kittenfs":
            assert set(phase["processes"]) == {"master", "worker-0", "worker-1", "worker-2"}
            assert all(p["peak_rss_mib"] > 0 for p in phase["processes"].values())
    assert {"disk_1KiB", "disk_16MiB"} <= set(data["references"])
    assert set(data["ratios"]) == {
        "small_get_vs_nginx",
        "large_get_vs_nginx",
        "small_put_vs_nginx",
        "large_put_mb_s",
        "thrasher_cycles_s",
    }
    assert data["ratios"]["thrasher_cycles_s"]["value"] > 0
    if not any(p["target"] == "nginx" for p in data["phases"]):
        assert any("nginx reference skipped" in note for note in data["notes"])
    assert "targets" in done.stdout


def test_bytes_are_counted_exactly_at_any_concurrency(cluster: Cluster) -> None:
    from kittenfs.bench.load import Phase, run_phase

    keys = [f"/count/{i}" for i in range(40)]
    put = run_phase(Phase(cluster.url, "put", keys, 8, 50_000), processes=1)
    get = run_phase(Phase(cluster.url, "get", keys, 8, 50_000), processes=1)
    assert (put.errors, get.errors) == (0, 0)
    assert put.bytes == get.bytes == 40 * 50_000
    assert len(get.latencies) == 40
