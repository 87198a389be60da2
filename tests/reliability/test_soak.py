"""The resource soak, small (CI): many small keys, then large values streamed through the
master, with every process's memory sampled; the documented run is the same command with
a million keys (docs/reliability.md)."""

from pathlib import Path

import pytest
from cluster import run_reporting


@pytest.mark.slow  # a soak
def test_a_small_soak_reports_memory_and_loses_nothing(tmp_path: Path) -> None:
    done, summary = run_reporting(
        tmp_path / "soak.json",
        "soak",
        "--small-keys",
        "6000",
        "--large",
        "3",
        "--large-mib",
        "8",
        "--check",
        "300",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert summary["small"]["errors"] == 0 and summary["large"]["errors"] == 0
    assert summary["check"] == {"read": 300, "wrong": 0}
    assert set(summary["memory_mib"]) == {"master", "worker-0", "worker-1", "worker-2"}
    for name, memory in summary["memory_mib"].items():
        rss, anon = memory["rss"], memory["anon"]
        assert 10 < rss["small_end"] <= rss["peak"] < 400, (name, memory)
        assert 5 < anon["small_end"] <= rss["small_end"] and anon["large_end"] > 5, (name, memory)
    for name, files in summary["open_files"]["end"].items():
        assert files < summary["open_files"]["start"][name] + 64, summary["open_files"]
