"""Admin routes of the master: jobs, and draining and removing workers (docs/operations.md).

POST   /_jobs/rebalance   {"dry_run": false, "rate": 0, "bandwidth": 0, "concurrency": 4}
POST   /_jobs/repair      (the same options)
POST   /_jobs/gc          {"grace": 3600, "purge_unlinked": false, "dry_run": false, "rate": 0}
GET    /_jobs             every job this master remembers, newest last
GET    /_jobs/<id>        one job's progress
DELETE /_jobs/<id>        cancel it
POST   /_workers/<i>/drain    stop placing replicas on worker i and move its replicas off
                              (a "drain" job; the same options)
DELETE /_workers/<i>/drain    place replicas on it again
DELETE /_workers/<i>?force=1  forget a stopped worker; refused while any key needs it
POST   /_workers/<i>/adopt    add a clone's copies to the replicas (the worker asks)
POST   /_workers/<i>/recheck  check its copy of every key naming it; damaged ones are
                              repaired (a worker whose store lost blobs asks)
"""

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from ..errors import NotFound, StateConflict, StoreError
from ..httputil import HTTPProblem, finite_number, json_object
from .access import Need
from .jobs import RUNNING, Job, Throttle
from .jobs.converge import DEFAULT_CONCURRENCY, Converger
from .jobs.gc import DEFAULT_GRACE, Collector
from .state import MasterState

log = logging.getLogger("kittenfs.master")

#: Job kinds, and whether each reads every byte of every copy (``deep``).
KINDS = {"rebalance": False, "repair": True}


async def dispatch_jobs(
    request: web.Request, state: MasterState, rest: str, need: Need
) -> web.Response:
    """Route ``/_jobs`` and ``/_jobs/<...>`` for a caller with ``need``; ``rest`` is the path
    after ``/_jobs/``."""
    await state.access.authorize(request, need)
    name = rest
    if not name:
        if request.method != "GET":
            raise HTTPProblem(405, "method_not_allowed", "/_jobs accepts GET", Allow="GET")
        running = state.jobs.running()
        return web.json_response(
            {
                "jobs": [job.describe() for job in state.jobs.history],
                "running": running.id if running else None,
            }
        )
    if name in (*KINDS, "gc"):
        if request.method != "POST":
            raise HTTPProblem(
                405, "method_not_allowed", f"/_jobs/{name} accepts POST", Allow="POST"
            )
        options = await _options(request, gc=name == "gc")
        job = await (start_gc(state, options) if name == "gc" else start(state, name, options))
        return web.json_response(job.describe(), status=202)
    if request.method == "GET":
        return web.json_response(state.jobs.get(name).describe())
    if request.method == "DELETE":
        return web.json_response((await state.jobs.cancel(name)).describe())
    raise HTTPProblem(
        405, "method_not_allowed", "/_jobs/<id> accepts GET, DELETE", Allow="GET, DELETE"
    )


async def start(
    state: MasterState,
    kind: str,
    options: dict[str, Any],
    only_worker: int | None = None,
    job_id: str | None = None,
) -> Job:
    """Start a rebalance, repair or drain job with validated ``options`` (``job_id``: one
    taken over).  A drain (of ``only_worker``) first marks the worker draining, unless it is
    a dry run.  Raise StateConflict unless this master holds the cluster's duties
    (duties.py)."""
    state.duties.require("a job")
    converger = Converger(state.mover)

    async def body(job: Job) -> None:
        if only_worker is not None and not options["dry_run"]:
            await state.membership.set_draining(only_worker, True)
        await converger.run(
            job,
            KINDS.get(kind, False),
            options["dry_run"],
            options["concurrency"],
            Throttle(options["rate"], options["bandwidth"]),
            only_worker,
        )

    return await state.jobs.start(kind, options, body, job_id)


async def start_gc(state: MasterState, options: dict[str, Any], job_id: str | None = None) -> Job:
    """Start a garbage collection job with validated ``options`` (on the master holding the
    cluster's duties: StateConflict elsewhere)."""
    state.duties.require("a job")
    collector = Collector(state.store, state.transport)

    async def body(job: Job) -> None:
        await collector.run(
            job,
            options["grace"],
            options["purge_unlinked"],
            options["dry_run"],
            Throttle(options["rate"], options["bandwidth"]),
        )

    return await state.jobs.start("gc", options, body, job_id)


def duties_changed(state: MasterState, held: bool) -> None:
    """Follow the cluster's duties (duties.Duties.changed): the master that takes them
    starts again the job its last holder was running; one that loses them interrupts its
    own (the job's record stays in the index for the next holder)."""
    task = asyncio.create_task(take_over_job(state) if held else state.jobs.interrupt())
    _following.add(task)
    task.add_done_callback(_following.discard)


#: The tasks duties_changed started, kept until done.
_following: set[asyncio.Task[Any]] = set()


async def stop_following() -> None:
    """Cancel the tasks duties_changed started, at shutdown (before the jobs stop: none may
    start a job on a master that is closing)."""
    for task in list(_following):
        task.cancel()
    await asyncio.gather(*_following, return_exceptions=True)


async def take_over_job(state: MasterState) -> Job | None:
    """Start again the job recorded in the index as running (its master died, or lost the
    duties), under its id, unless a job runs here; return it, or None."""
    try:
        stored = await state.index.setting(RUNNING)
    except StoreError as exc:
        log.warning("could not read the running job from the index: %s", exc)
        return None
    if stored is None or state.jobs.running() is not None:
        return None
    record = json.loads(stored)
    kind, options, job_id = record["kind"], record["options"], record["id"]
    log.info("taking over %s job %s %s", kind, job_id, options)
    try:
        if kind == "gc":
            return await start_gc(state, options, job_id)
        return await start(state, kind, options, options.get("worker"), job_id)
    except StateConflict as exc:  # the duties moved on meanwhile
        log.info("job %s not taken over: %s", job_id, exc)
        return None


async def dispatch_workers(
    request: web.Request, state: MasterState, rest: str, need: Need
) -> web.Response:
    """Route ``/_workers/<i>/drain`` and ``/_workers/<i>`` for a caller with ``need`` (a
    worker may ask to be adopted itself); ``rest`` is the part after ``/_workers/``."""
    text, _, action = rest.partition("/")
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or action not in (
        "",
        "drain",
        "adopt",
        "recheck",
    ):
        raise HTTPProblem(404, "no_such_route", f"/_workers/{rest} is not a route")
    await state.access.authorize(
        request, Need.MEMBER_OR_ADMIN if action in ("adopt", "recheck") else need
    )
    index = int(text)
    if action == "drain" and request.method == "POST":
        options = await _options(request)
        if index not in state.membership.workers:
            raise NotFound(f"no worker {index}", "unknown_worker")
        job = await start(state, "drain", {**options, "worker": index}, only_worker=index)
        return web.json_response(job.describe(), status=202)
    if action == "adopt" and request.method == "POST":
        return web.json_response(await state.mover.adopt(index))
    if action == "recheck" and request.method == "POST":
        state.membership.require_up(index)
        started = state.repairs.recheck(index)
        return web.json_response({"worker": index, "started": started}, status=202)
    if action == "drain" and request.method == "DELETE":
        await state.membership.set_draining(index, False)
        return web.Response(status=204)
    if not action and request.method == "DELETE":
        await state.membership.remove(index, request.query.get("force") in ("1", "true", "yes"))
        return web.Response(status=204)
    allowed = {"": "DELETE", "drain": "POST, DELETE", "adopt": "POST", "recheck": "POST"}[action]
    raise HTTPProblem(
        405, "method_not_allowed", f"/_workers/{rest} accepts {allowed}", Allow=allowed
    )


async def _options(request: web.Request, gc: bool = False) -> dict[str, Any]:
    """Parse a job's options: an optional JSON object (an empty body means the defaults)."""
    raw = await request.read()
    body = json_object(raw) if raw.strip() else {}
    known = {
        "dry_run",
        "rate",
        "bandwidth",
        *(("grace", "purge_unlinked") if gc else ("concurrency",)),
    }
    unknown = set(body) - known
    if unknown:
        raise HTTPProblem(400, "bad_option", f"unknown options: {', '.join(sorted(unknown))}")
    options = {
        "dry_run": body.get("dry_run", False),
        "rate": body.get("rate", 0),
        "bandwidth": body.get("bandwidth", 0),
        "concurrency": body.get("concurrency", DEFAULT_CONCURRENCY),
    }
    if not isinstance(options["dry_run"], bool):
        raise HTTPProblem(400, "bad_option", "dry_run must be true or false")
    for name in ("rate", "bandwidth"):
        if not _non_negative(options[name]):
            raise HTTPProblem(400, "bad_option", f"{name} must be a number >= 0 (0: no limit)")
    concurrency = options["concurrency"]
    if type(concurrency) is not int or not 1 <= concurrency <= 64:
        raise HTTPProblem(400, "bad_option", "concurrency must be an integer 1..64")
    if gc:
        del options["concurrency"]
        options["grace"] = body.get("grace", DEFAULT_GRACE)
        options["purge_unlinked"] = body.get("purge_unlinked", False)
        if not _non_negative(options["grace"]):
            raise HTTPProblem(400, "bad_option", "grace must be a number of seconds >= 0")
        if not isinstance(options["purge_unlinked"], bool):
            raise HTTPProblem(400, "bad_option", "purge_unlinked must be true or false")
    return options


def _non_negative(value: object) -> bool:
    """Return True for a finite number >= 0 (not a bool, NaN or an infinity: JSON's 1e999
    parses as one)."""
    number = finite_number(value)
    return number is not None and number >= 0
