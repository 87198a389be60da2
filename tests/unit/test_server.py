"""The process-level helpers of server.py that the soak depends on."""

import sys
from pathlib import Path

import pytest

from kittenfs.server import _malloc_trim

MiB = 1024 * 1024


def anon_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc only")
def test_malloc_trim_hands_free_memory_inside_the_heap_back() -> None:
    trim = _malloc_trim()
    assert trim is not None  # glibc: without it the master's heap grew with every key
    held = [bytes(600 + i % 400) for i in range(200_000)]  # ~160 MB of malloc'd objects
    survivors = held[::50]  # scattered survivors keep the heap's top from being given back
    del held
    before = anon_bytes()
    trim(0)
    assert before - anon_bytes() > 50 * MiB, "malloc_trim gave back almost nothing"
    assert len(survivors) == 4000
