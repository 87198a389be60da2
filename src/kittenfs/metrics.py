"""Prometheus metrics of a master or worker process, served at ``GET /metrics``.

Every request is counted by route, method and status, timed, and its body bytes in and out
are added up.  Routes are coarse names (``key``, ``blob``, ``admin``, ...), never paths, so
the number of series stays bounded whatever the keys.  Each process adds gauges and counters
of its own state (``gauge``, ``counter``, ``labelled_gauge``), read when Prometheus scrapes,
so the code that keeps a count keeps a plain int and never imports prometheus_client.

Every process also says what it is (``kittenfs_info{role, version}``) and, from
prometheus_client's process collector, its start time, memory, CPU and open files
(``process_*``): a restart shows as a new ``process_start_time_seconds``.
"""

import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .httputil import HTTPProblem

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Most (route, method, status) series whose lookup is kept (Metrics.record).
SERIES_CACHED = 1024

#: Latency buckets, in seconds: loopback requests take well under a millisecond, large
#: transfers seconds.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    """The metrics of one process; ``classify`` turns a request path into a route name."""

    def __init__(self, role: str, classify: Callable[[str], str]) -> None:
        self.classify = classify
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        Info("kittenfs", "what this process is", registry=self.registry).info(
            {"role": role, "version": __version__}
        )
        labels = ["route", "method", "status"]
        self.requests = Counter(
            "kittenfs_requests",
            f"HTTP requests served by this {role}",
            labels,
            registry=self.registry,
        )
        self.seconds = Histogram(
            "kittenfs_request_seconds",
            "time to answer a request",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.bytes_in = Counter(
            "kittenfs_bytes_in", "request body bytes received", ["route"], registry=self.registry
        )
        self.bytes_out = Counter(
            "kittenfs_bytes_out", "response body bytes sent", ["route"], registry=self.registry
        )
        #: Awaited before each scrape: gauges whose values take long to compute (a scan of
        #: the index) refresh them here, without blocking the server, and read them after.
        self.before_scrape: list[Callable[[], Awaitable[None]]] = []
        #: The labelled series of each (route, method, status) met so far: looking them up
        #: with ``labels()`` (checks, a lock) on every request was a twelfth of a small
        #: GET's CPU.  At most SERIES_CACHED: a client may make up methods.
        self._series: dict[tuple[str, str, int], _Series] = {}

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Add a gauge whose value ``read`` gives at every scrape."""
        Gauge(name, help_text, registry=self.registry).set_function(read)

    def counter(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Add a counter (exposed as ``<name>_total``) whose value ``read`` gives at every
        scrape: a count that only grows while the process lives."""
        self.registry.register(_Read(lambda: CounterMetricFamily(name, help_text, value=read())))

    def labelled_gauge(
        self, name: str, help_text: str, label: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        """Add a gauge with one series per ``label`` value, as ``read`` gives them at every
        scrape (a series whose value is gone from ``read`` is gone from the scrape)."""

        def family() -> Metric:
            gauge = GaugeMetricFamily(name, help_text, labels=[label])
            for value, number in read().items():
                gauge.add_metric([value], number)
            return gauge

        self.registry.register(_Read(family))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count and time every request (put it outside the JSON error middleware)."""
        started = time.perf_counter()
        route = self.classify(request.path)
        status = 500
        response = None
        try:
            response = await handler(request)
            status = response.status
            return response
        except HTTPProblem as problem:
            status = problem.status
            raise
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.record(
                route,
                request.method,
                status,
                time.perf_counter() - started,
                request.content_length or 0,
                sent_bytes(response),
            )

    def record(
        self, route: str, method: str, status: int, seconds: float, received: int, sent: int
    ) -> None:
        """Count one request answered (or one message of a stream, as its method says)."""
        series = self._series.get((route, method, status))
        if series is None:
            series = _Series(
                self.requests.labels(route, method, str(status)),
                self.seconds.labels(route),
                self.bytes_in.labels(route),
                self.bytes_out.labels(route),
            )
            if len(self._series) < SERIES_CACHED:
                self._series[(route, method, status)] = series
        series.requests.inc()
        series.seconds.observe(seconds)
        if received:
            series.bytes_in.inc(received)
        if sent:
            series.bytes_out.inc(sent)

    @staticmethod
    def sendfile_sent(response: web.StreamResponse, count: int) -> None:
        """Note bytes sent with sendfile(2), which the response's own count misses."""
        response[_SENDFILE] = count

    async def handle(self, request: web.Request) -> web.Response:
        """GET /metrics: every metric in the Prometheus text format."""
        for refresh in self.before_scrape:
            await refresh()
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


_SENDFILE = "kittenfs.sendfile_bytes"


class _Read(Collector):
    """A metric made anew at every scrape by ``make``."""

    def __init__(self, make: Callable[[], Metric]) -> None:
        self.make = make

    def collect(self) -> Iterator[Metric]:
        yield self.make()


@dataclass(frozen=True, slots=True)
class _Series:
    """The series one (route, method, status) of requests counts in."""

    requests: Counter
    seconds: Histogram
    bytes_in: Counter
    bytes_out: Counter


def sent_bytes(response: web.StreamResponse | None) -> int:
    """Return the body bytes a response sent (with sendfile(2) too; 0 for none)."""
    if response is None:
        return 0
    return int(response.get(_SENDFILE, 0) or response.body_length or 0)
