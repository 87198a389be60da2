"""Background jobs of the master: one at a time, throttled, observable.

- converge.py: rebalance, repair and drain (the move protocol, move.py, over every key), and
  the repair queue (keys whose copies were found damaged, as they come);
- gc.py: orphans on the workers that no index record accounts for, and unlinked keys.

Offline and worker-side jobs live beside what they work on: ``kittenfs rebuild`` (the index
from the workers: kittenfs/rebuild.py), clone and scrub (kittenfs/worker/clone.py, scrub.py).

A job walks the index key by key while clients keep reading and writing.  Each step is
idempotent and crash-safe on its own (see move.py), so a job that is cut off (kill -9,
restart, cancel) is simply run again and converges.  Its progress is kept in memory and served
as JSON at ``GET /_jobs``; the CLI polls it to draw a progress bar.

On an index shared by several masters, the running job is also kept in the index (the
``job`` setting: its id, kind and options) until it ends or is cancelled: a master that
loses the cluster's duties interrupts its job and leaves that record, and the master that
takes the duties over starts the job again (admin.take_over_job).
"""

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ...errors import NotFound, StateConflict, StoreError
from ...throttle import Throttle
from ..index import Index

__all__ = ["Job", "Jobs", "Throttle"]

log = logging.getLogger("kittenfs.master")

#: Finished jobs kept for ``GET /_jobs``.
KEEP_FINISHED = 20
#: The index setting that holds the running job on a shared index.
RUNNING = "job"


@dataclass
class Job:
    """One run of a job and its progress; ``found`` and ``fixed`` count outcomes by name."""

    kind: str
    options: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = "running"  # running, done, failed, cancelled, interrupted
    started: float = field(default_factory=time.time)
    finished: float | None = None
    items_total: int = 0
    items_done: int = 0
    bytes_done: int = 0
    found: Counter[str] = field(default_factory=Counter)
    fixed: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def error(self, message: str) -> None:
        """Record a problem with one item; the job goes on (the first 100 are kept)."""
        self.found["errors"] += 1
        if len(self.errors) < 100:
            self.errors.append(message)

    def describe(self) -> dict[str, Any]:
        """Return the job as JSON for ``GET /_jobs``."""
        elapsed = (self.finished or time.time()) - self.started
        return {
            "id": self.id,
            "kind": self.kind,
            "options": self.options,
            "state": self.state,
            "started": self.started,
            "finished": self.finished,
            "elapsed_s": elapsed,
            "items_total": self.items_total,
            "items_done": self.items_done,
            "bytes_done": self.bytes_done,
            "found": dict(self.found),
            "fixed": dict(self.fixed),
            "errors": self.errors,
        }


class Jobs:
    """The master's jobs: at most one runs; the last few finished ones are remembered.  With
    ``index`` (a shared one), the running job is kept there too (RUNNING)."""

    def __init__(self, index: Index | None = None) -> None:
        self.history: list[Job] = []
        self.index = index

    def running(self) -> Job | None:
        """Return the job that is running, if any."""
        return next((job for job in self.history if job.state == "running"), None)

    async def start(
        self,
        kind: str,
        options: dict[str, Any],
        body: Callable[[Job], Awaitable[None]],
        job_id: str | None = None,
    ) -> Job:
        """Start ``body`` as a job (with ``job_id``: one taken over, under its id), recorded
        in the index first if it is shared: a job acknowledged is one another master can
        take over.  Raise StateConflict if another job is running."""
        current = self.running()
        if current is not None:
            raise StateConflict(
                f"{current.kind} job {current.id} is running; wait or cancel it", "job_running"
            )
        job = Job(kind, options) if job_id is None else Job(kind, options, job_id)
        self.history = [*self.history[-(KEEP_FINISHED - 1) :], job]  # running from now on
        if self.index is not None:
            record = {"id": job.id, "kind": job.kind, "options": job.options}
            try:
                await self.index.put_setting(RUNNING, json.dumps(record))
            except BaseException:
                job.state, job.finished = "failed", time.time()
                raise
        job.task = asyncio.create_task(self._run(job, body))
        log.info("%s job %s started %s", kind, job.id, options)
        return job

    async def _run(self, job: Job, body: Callable[[Job], Awaitable[None]]) -> None:
        try:
            await body(job)
            job.state = "done"
        except asyncio.CancelledError:
            if job.state == "running":
                job.state = "cancelled"
        except Exception as exc:  # the job fails; the master goes on
            log.exception("%s job %s failed", job.kind, job.id)
            job.state = "failed"
            job.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            job.finished = time.time()
            if job.state != "interrupted":
                await self._forget(job)
            log.info(
                "%s job %s %s: %d/%d items, found %s, fixed %s",
                job.kind,
                job.id,
                job.state,
                job.items_done,
                job.items_total,
                dict(job.found),
                dict(job.fixed),
            )

    def get(self, job_id: str) -> Job:
        """Return a job by id (the latest run of it: a job taken over twice by one master
        has two); raise NotFound if it is not known."""
        for job in reversed(self.history):
            if job.id == job_id:
                return job
        raise NotFound(f"no job {job_id!r}", "no_such_job")

    async def _forget(self, job: Job) -> None:
        """Drop the index's record of ``job``, now ended, if it is still that job's."""
        if self.index is None:
            return
        try:
            stored = await self.index.setting(RUNNING)
            if stored is not None and json.loads(stored).get("id") == job.id:
                await self.index.put_setting(RUNNING, None)
        except (StoreError, ValueError) as exc:  # the next holder runs it again: harmless
            log.warning("the record of job %s stays in the index: %s", job.id, exc)

    async def cancel(self, job_id: str) -> Job:
        """Stop a running job between two items; its finished items stay done."""
        job = self.get(job_id)
        if job.task is not None and not job.task.done():
            job.task.cancel()
            await asyncio.gather(job.task, return_exceptions=True)
        return job

    async def interrupt(self) -> None:
        """Stop the running job because this master no longer holds the duties, or stops:
        unlike a cancel, its record stays in the index for the master that takes over."""
        current = self.running()
        if current is not None:
            current.state = "interrupted"
            await self.cancel(current.id)

    async def close(self) -> None:
        """Interrupt the running job, at shutdown."""
        await self.interrupt()
