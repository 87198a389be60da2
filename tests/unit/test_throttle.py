"""Throttle: background work never runs ahead of its rate (lower bounds only: a slow machine
may take longer, never less)."""

import asyncio
import time

from kittenfs.throttle import Throttle


def elapsed(throttle: Throttle, items: int, nbytes: int) -> float:
    """Seconds from the throttle's start (its rates count from there) to the last item."""

    async def run() -> float:
        for _ in range(items):
            await throttle.take(1, nbytes)
        return time.monotonic() - throttle.started

    return asyncio.run(run())


def test_items_per_second_bound_the_pace() -> None:
    assert elapsed(Throttle(items_per_s=100), 20, 0) >= 0.19


def test_bytes_per_second_bound_the_pace() -> None:
    assert elapsed(Throttle(bytes_per_s=1_000_000), 5, 100_000) >= 0.49


def test_no_limit_does_not_wait() -> None:
    assert elapsed(Throttle(), 1000, 10**9) < 5  # bounded: no sleeping at all
