"""A rate limit for background work (jobs, clone), in items and bytes per second."""

import asyncio
import time


class Throttle:
    """Limits a job to ``items_per_s`` items and ``bytes_per_s`` bytes a second (0: no limit).

    ``take`` sleeps just long enough that the totals so far never run ahead of the rates.
    """

    def __init__(self, items_per_s: float = 0.0, bytes_per_s: float = 0.0) -> None:
        self.items_per_s, self.bytes_per_s = items_per_s, bytes_per_s
        self.started = time.monotonic()
        self.items = 0
        self.bytes = 0

    async def take(self, items: int = 0, nbytes: int = 0) -> None:
        """Account for ``items`` and ``nbytes`` of work, waiting first if it is too soon."""
        self.items += items
        self.bytes += nbytes
        due = max(
            self.items / self.items_per_s if self.items_per_s else 0.0,
            self.bytes / self.bytes_per_s if self.bytes_per_s else 0.0,
        )
        wait = self.started + due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
