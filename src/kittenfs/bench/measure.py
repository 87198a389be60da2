"""One phase measured: throughput, latency percentiles, errors, each process's CPU and memory."""

from dataclasses import dataclass, field
from typing import Any

from .load import Phase, PhaseResult, S3Credential, run_phase
from .procstat import cpu_seconds, peak_rss_mib

MiB = 1024 * 1024


#: Reads per key in the small GET phases (and of nginx's file): reads are fast, and a phase
#: must last long enough (a second or more) for its rate to mean something.
GET_REPEAT = 4


@dataclass
class Run:
    """Everything measured in one run, in the shape of the JSON report."""

    meta: dict[str, Any]
    phases: list[dict[str, Any]] = field(default_factory=list)
    references: dict[str, Any] = field(default_factory=dict)
    ratios: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of already sorted values (0 if there are none)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, int(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def summarize(
    name: str,
    target: str,
    phase: Phase,
    result: PhaseResult,
    processes: dict[str, dict[str, float]],
    unit_bytes: bool = False,
) -> dict[str, Any]:
    """Return one phase's figures: throughput, latency percentiles, errors, CPU and memory."""
    latencies = sorted(result.latencies)
    done = len(latencies)
    wall = max(result.wall, 1e-9)
    server_cpu = sum(process["cpu_s"] for process in processes.values())
    return {
        "name": name,
        "target": target,
        "operation": phase.operation,
        "concurrency": phase.concurrency,
        "value_size": phase.value_size,
        "count": done,
        "ops_s": done / wall,
        "mb_s": result.bytes / wall / 1e6,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "p999_ms": percentile(latencies, 0.999) * 1e3,
        "max_ms": (latencies[-1] * 1e3) if latencies else 0.0,
        "errors": result.errors,
        "error_samples": result.error_samples,
        "wall_s": result.wall,
        "client_cpu_s": result.client_cpu,
        # CPU per operation, summed over every process of the target: less load-dependent
        # than throughput, so it compares targets and trees on a noisy machine.
        "server_cpu_us_op": server_cpu / max(done, 1) * 1e6,
        "processes": processes,
        "throughput_unit": "MB/s" if unit_bytes else "ops/s",
    }


class Measured:
    """Runs phases against one target, recording each process's CPU and peak RSS."""

    def __init__(
        self,
        run: Run,
        base_url: str,
        target: str,
        pids: dict[str, int],
        generators: int,
        headers: dict[str, str] | None = None,
        s3: S3Credential | None = None,
    ) -> None:
        self.run, self.base_url, self.target, self.pids = run, base_url, target, pids
        self.generators = generators
        self.headers = headers or {}
        #: The key that signs the ``s3*`` operations of this target's phases.
        self.s3 = s3

    def phase(
        self,
        name: str,
        operation: str,
        keys: list[str],
        concurrency: int,
        value_size: int = 1024,
        record: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        phase = Phase(
            self.base_url,
            operation,
            keys,
            concurrency,
            value_size,
            headers=self.headers,
            s3=self.s3,
            **extra,
        )
        before = {role: cpu_seconds(pid) for role, pid in self.pids.items()}
        result = run_phase(phase, self.generators)
        processes = {
            role: {"cpu_s": cpu_seconds(pid) - before[role], "peak_rss_mib": peak_rss_mib(pid)}
            for role, pid in self.pids.items()
        }
        figures = summarize(
            name, self.target, phase, result, processes, unit_bytes=value_size >= MiB
        )
        if record:
            self.run.phases.append(figures)
        return figures


class InTurn:
    """Runs each phase against several targets, one after the other, alternating which goes
    first: on a noisy machine every target's phase is slowed alike, and no target always
    runs on the caches (or in the debris) of another's.  All targets run throughout."""

    def __init__(self, targets: list[Measured]) -> None:
        self.targets = targets
        self._phases = 0

    def phase(
        self,
        name: str,
        operation: str,
        keys: list[str],
        concurrency: int,
        value_size: int = 1024,
        record: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        """Run one phase against every target; return the first target's figures."""
        order = self.targets if self._phases % 2 == 0 else list(reversed(self.targets))
        self._phases += 1
        figures = {
            id(m): m.phase(name, operation, keys, concurrency, value_size, record, **extra)
            for m in order
        }
        return figures[id(self.targets[0])]
