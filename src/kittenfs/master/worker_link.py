"""The master's side of the worker link: registration, heartbeats and corruption reports.

Every route here is for members of the cluster only (signed with the cluster secret,
access.py).  On top of that:

- a worker that belongs to another cluster (it kept that cluster's id from its first
  registration) is refused with 409 ``wrong_cluster``, and nothing changes;
- a new worker, or a known one at a new URL, is registered only once the master has
  reached it there and it has answered with its own id: a registration cannot point a
  worker's replicas at an address that is not that worker.
"""

import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from ..httputil import HTTPProblem, json_object
from .state import STATE, MasterState

log = logging.getLogger("kittenfs.master")

#: Seconds the master waits for a registering worker to answer at its URL.
VERIFY_TIMEOUT = 5.0


def _state(request: web.Request) -> MasterState:
    return request.app[STATE]


async def register(request: web.Request) -> web.Response:
    """POST /_workers/register {id, url, index?, cluster?}: the worker's index and the
    master's cluster id."""
    state = _state(request)
    body = json_object(await request.read())
    worker_id, url, wanted = body.get("id"), body.get("url"), body.get("index")
    cluster = body.get("cluster")
    valid_index = wanted is None or (type(wanted) is int and wanted >= 0)
    if (
        not isinstance(worker_id, str)
        or not worker_id
        or not valid_index
        or not isinstance(cluster, str | None)
    ):
        raise HTTPProblem(
            400,
            "bad_registration",
            "need {id: str, url: str, index: int >= 0|null, cluster: str|null}",
        )
    if not isinstance(url, str) or not _is_base_url(url):
        raise HTTPProblem(400, "bad_registration", f"url {url!r} is not http(s)://host:port")
    if cluster is not None and cluster != state.cluster_id:
        log.error(
            "worker %s at %s belongs to cluster %s, not this one (%s): refused",
            worker_id,
            url,
            cluster,
            state.cluster_id,
        )
        raise HTTPProblem(
            409,
            "wrong_cluster",
            f"worker {worker_id} belongs to cluster "
            f"{cluster}; this master's cluster is {state.cluster_id}",
        )
    if not state.membership.is_at(worker_id, url):
        await _verify(state, worker_id, url)
    info = await state.membership.register(worker_id, url, wanted)
    return web.json_response(
        {
            "index": info.index,
            "master_id": state.master_id,
            "cluster": state.cluster_id,
            "cluster_auth": state.config.cluster_key is not None,
        }
    )


async def _verify(state: MasterState, worker_id: str, url: str) -> None:
    """Raise 409 unless the worker at ``url`` answers ``/health`` with ``worker_id``."""
    try:
        async with state.session.get(
            f"{url.rstrip('/')}/health", timeout=aiohttp.ClientTimeout(total=VERIFY_TIMEOUT)
        ) as resp:
            answer: Any = await resp.json() if resp.status == 200 else None
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        answer = f"{type(exc).__name__}: {exc}"
    if (
        not isinstance(answer, dict)
        or answer.get("id") != worker_id
        or answer.get("role") != "worker"
    ):
        raise HTTPProblem(
            409,
            "unverified_url",
            f"{url} does not answer as worker "
            f"{worker_id} ({answer!r:.200}); a worker registers the URL at "
            "which the master reaches it (--advertise)",
        )


def _is_base_url(url: str) -> bool:
    """Return True for a plain ``http(s)://host:port`` URL, safe to put in a Location header."""
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and port is not None
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
    )


async def heartbeat(request: web.Request) -> web.Response:
    """POST /_workers/heartbeat {id, stats}: 204, or 404 if the worker must register again."""
    body = json_object(await request.read())
    stats = body.get("stats")
    if not isinstance(body.get("id"), str) or not isinstance(stats, dict):
        raise HTTPProblem(400, "bad_heartbeat", "need {id: str, stats: object}")
    if not _state(request).membership.heartbeat(body["id"], stats):
        raise HTTPProblem(404, "unknown_worker", "register first")
    return web.Response(status=204)


async def corrupt(request: web.Request) -> web.Response:
    """POST /_workers/corrupt {id, blobs: [{key, version}]}: a worker found these blobs
    corrupt (its scrub, or a read); the copies of the keys' current versions are damaged,
    and their keys queued for repair.  202 {queued}."""
    state = _state(request)
    body = json_object(await request.read())
    blobs = body.get("blobs")
    if (
        not isinstance(body.get("id"), str)
        or not isinstance(blobs, list)
        or not all(
            isinstance(b, dict)
            and isinstance(b.get("key"), str)
            and isinstance(b.get("version"), str)
            for b in blobs
        )
    ):
        raise HTTPProblem(400, "bad_report", "need {id: str, blobs: [{key: str, version: str}]}")
    worker = state.membership.index_of(body["id"])
    if worker is None:
        raise HTTPProblem(404, "unknown_worker", "register first")
    queued = 0
    for blob in blobs:
        found = await state.index.current(blob["key"])
        if (
            found is not None
            and found[1].version == blob["version"]
            and worker in found[1].replicas
        ):
            state.damage.mark(found[1], worker)
            queued += 1
    log.warning(
        "worker %d reports %d corrupt blobs; %d keys queued for repair", worker, len(blobs), queued
    )
    return web.json_response({"queued": queued}, status=202)
