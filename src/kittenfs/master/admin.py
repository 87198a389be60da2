"""Admin routes of the master: start, watch and cancel jobs (docs/operations.md).

    POST   /_jobs/rebalance   {"dry_run": false, "rate": 0, "bandwidth": 0, "concurrency": 4}
    POST   /_jobs/repair      (the same options)
    GET    /_jobs             every job this master remembers, newest last
    GET    /_jobs/<id>        one job's progress
    DELETE /_jobs/<id>        cancel it
"""

from typing import Any

from aiohttp import web

from ..httputil import HTTPProblem, json_object
from .converge import DEFAULT_CONCURRENCY, Converger
from .jobs import Job, Throttle
from .state import MasterState

#: Job kinds, and whether each reads every byte of every copy (``deep``).
KINDS = {"rebalance": False, "repair": True}


async def dispatch_jobs(request: web.Request, state: MasterState, rest: str) -> web.Response:
    """Route ``/_jobs`` and ``/_jobs/<...>``; ``rest`` is the path after ``/_jobs``."""
    name = rest.lstrip("/")
    if not name:
        if request.method != "GET":
            raise HTTPProblem(405, "method_not_allowed", "/_jobs accepts GET", Allow="GET")
        running = state.jobs.running()
        return web.json_response({"jobs": [job.describe() for job in state.jobs.history],
                                  "running": running.id if running else None})
    if name in KINDS:
        if request.method != "POST":
            raise HTTPProblem(405, "method_not_allowed", f"/_jobs/{name} accepts POST",
                              Allow="POST")
        job = start(state, name, await _options(request))
        return web.json_response(job.describe(), status=202)
    if request.method == "GET":
        return web.json_response(state.jobs.get(name).describe())
    if request.method == "DELETE":
        return web.json_response((await state.jobs.cancel(name)).describe())
    raise HTTPProblem(405, "method_not_allowed", "/_jobs/<id> accepts GET, DELETE",
                      Allow="GET, DELETE")


def start(state: MasterState, kind: str, options: dict[str, Any]) -> Job:
    """Start a rebalance or repair job with validated ``options``."""
    converger = Converger(state.store)

    async def body(job: Job) -> None:
        await converger.run(job, KINDS[kind], options["dry_run"], options["concurrency"],
                            Throttle(options["rate"], options["bandwidth"]))

    return state.jobs.start(kind, options, body)


async def _options(request: web.Request) -> dict[str, Any]:
    """Parse a job's options: an optional JSON object (an empty body means the defaults)."""
    raw = await request.read()
    body = json_object(raw) if raw.strip() else {}
    unknown = set(body) - {"dry_run", "rate", "bandwidth", "concurrency"}
    if unknown:
        raise HTTPProblem(400, "bad_option", f"unknown options: {', '.join(sorted(unknown))}")
    options = {"dry_run": body.get("dry_run", False), "rate": body.get("rate", 0),
               "bandwidth": body.get("bandwidth", 0),
               "concurrency": body.get("concurrency", DEFAULT_CONCURRENCY)}
    if not isinstance(options["dry_run"], bool):
        raise HTTPProblem(400, "bad_option", "dry_run must be true or false")
    for name in ("rate", "bandwidth"):
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise HTTPProblem(400, "bad_option", f"{name} must be a number >= 0 (0: no limit)")
    concurrency = options["concurrency"]
    if type(concurrency) is not int or not 1 <= concurrency <= 64:
        raise HTTPProblem(400, "bad_option", "concurrency must be an integer 1..64")
    return options
