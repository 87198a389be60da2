"""What the master tells Prometheus: its requests (by route) and gauges of its state."""

import time
from collections.abc import Callable

from ..keys import RESERVED_PREFIXES
from ..metrics import Metrics
from .console import ASSETS as CONSOLE_ASSETS
from .state import MasterState

#: Seconds a count of under-replicated and misplaced keys is reused: it reads the whole index.
KEY_HEALTH_TTL = 30.0


def route_of(path: str) -> str:
    """Name a master request's route, coarsely (a key is "key", whatever its name)."""
    if path in ("/health", "/metrics", "/clear"):
        return path[1:]
    if path in ("/_cluster", "/gets"):
        return "cluster"
    if path in CONSOLE_ASSETS:
        return "ui"
    if path in ("/_workers/register", "/_workers/heartbeat"):
        return "worker_link"
    if path.startswith(("/_jobs", "/_workers/")):
        return "admin"
    if path.startswith(RESERVED_PREFIXES[1:]):
        return "seed"
    return "other" if path.startswith("/_") else "key"


def master_metrics(current: Callable[[], MasterState | None]) -> Metrics:
    """Return the master's metrics; gauges read the state ``current`` gives (None at start)."""
    metrics = Metrics("master", route_of)

    def of(read: Callable[[MasterState], float]) -> Callable[[], float]:
        return lambda: read(state) if (state := current()) is not None else 0.0

    health = _KeyHealth()

    async def refresh_health() -> None:
        if (state := current()) is not None:
            await health.refresh(state)

    metrics.before_scrape.append(refresh_health)
    metrics.gauge("kittenfs_workers", "registered workers", of(lambda s: len(s.membership.workers)))
    metrics.gauge(
        "kittenfs_workers_up",
        "workers up",
        of(lambda s: sum(map(s.membership.is_up, s.membership.workers))),
    )
    metrics.gauge(
        "kittenfs_cache_bytes",
        "bytes in the hot-value cache",
        of(lambda s: s.store.cache.stats.bytes),
    )
    metrics.labelled_gauge(
        "kittenfs_worker_up",
        "1 for each registered worker that is up, 0 for one that is down",
        "worker",
        lambda: worker_states(current()),
    )
    metrics.counter(
        "kittenfs_cache_hits",
        "hot-value cache hits",
        of(lambda s: s.store.cache.stats.hits),
    )
    metrics.counter(
        "kittenfs_cache_misses",
        "hot-value cache misses",
        of(lambda s: s.store.cache.stats.misses),
    )
    metrics.gauge(
        "kittenfs_under_replicated_keys",
        f"keys with fewer than R replicas up (counted at most every {KEY_HEALTH_TTL:.0f} s)",
        of(lambda s: health.counts.get("under_replicated", 0)),
    )
    metrics.gauge(
        "kittenfs_misplaced_keys",
        "keys not on their preferred workers",
        of(lambda s: health.counts.get("misplaced", 0)),
    )
    metrics.gauge(
        "kittenfs_job_running",
        "1 while a job runs",
        of(lambda s: float(s.jobs.running() is not None)),
    )
    metrics.gauge(
        "kittenfs_job_items_done",
        "items the running (or last) job has done",
        of(lambda s: s.jobs.history[-1].items_done if s.jobs.history else 0),
    )
    metrics.gauge(
        "kittenfs_job_items_total",
        "items the running (or last) job will do",
        of(lambda s: s.jobs.history[-1].items_total if s.jobs.history else 0),
    )
    metrics.gauge(
        "kittenfs_job_bytes_done",
        "bytes the running (or last) job has copied",
        of(lambda s: s.jobs.history[-1].bytes_done if s.jobs.history else 0),
    )
    return metrics


def worker_states(state: MasterState | None) -> dict[str, float]:
    """Return 1.0 (up) or 0.0 (down) for each registered worker, by index."""
    if state is None:
        return {}
    membership = state.membership
    return {str(index): float(membership.is_up(index)) for index in membership.workers}


class _KeyHealth:
    """The key counts of ``/_cluster?keys``, reused for KEY_HEALTH_TTL seconds."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.at = float("-inf")

    async def refresh(self, state: MasterState) -> None:
        if time.monotonic() - self.at > KEY_HEALTH_TTL:
            self.counts, self.at = await state.key_health(), time.monotonic()
