"""Running an aiohttp application as a kittenFS process: logging, listening and stopping."""

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import resource
import signal
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from .config import ConfigError, Limits
from .front import Answer, Front
from .httputil import CUT, json_errors
from .limits import LIMITS, Runner, upload_limit
from .metrics import Metrics
from .requestid import request_ids, stamp
from .streaming import ByteBudget

#: The process's budget of bytes for streamed responses (streaming.py).
BUDGET = web.AppKey("stream_budget", ByteBudget)
#: The process's metrics registry, served at ``GET /metrics``.
METRICS = web.AppKey("metrics", Metrics)


def new_app(metrics: Metrics, limits: Limits, errors: Middleware = json_errors) -> web.Application:
    """Return an application whose every error response is made by ``errors`` (JSON by
    default; the S3 API's are XML), whose every request is counted in ``metrics`` (served
    at ``GET /metrics``), which enforces ``limits``, and whose every response carries its
    request's id (requestid.py)."""
    app = web.Application(
        middlewares=[request_ids, metrics.middleware, errors, upload_limit(limits)],
        client_max_size=16 * 1024 * 1024,
    )
    app.on_response_prepare.append(stamp)
    app[METRICS] = metrics
    app[LIMITS] = limits
    app[BUDGET] = ByteBudget(limits.stream_buffer)
    return app


def stop_process(reason: str) -> None:
    """Stop this process as SIGTERM does, logging why: for a state it cannot go on in (its
    database deleted under it), where every further request would fail or lie."""
    logging.getLogger("kittenfs").critical("%s; stopping", reason)
    signal.raise_signal(signal.SIGTERM)


def raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one: every connection, replica stream
    and open blob is a descriptor, and Debian's default soft limit of 1024 is reached by a
    few hundred concurrent uploads."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


#: Seconds between two hand-backs of the heap's free pages to the kernel.
TRIM_EVERY = 10.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


async def give_back_free_memory(interval: float = TRIM_EVERY) -> None:
    """Every ``interval`` seconds, hand the heap's free pages back to the kernel.

    glibc gives freed memory back on its own only from the top of the heap.  The master's
    hot-value cache frees values all through it, so without this its resident memory grew
    about 300 bytes per key written (a million-key soak: 168 to 450 MiB) while its live
    Python objects stayed flat (tracemalloc); ``malloc_trim(0)`` released most of it.

    Responses cut part way (a client that stalled past --send-timeout, or left) leave
    reference cycles that hold their connections' buffers (about 256 KiB each) until a full
    garbage collection, which Python runs rarely: 200 cut streams held 70 MiB for minutes.
    So when any response was cut since the last pass, a collection runs first.
    """
    trim = _malloc_trim()
    collected = 0
    while True:
        await asyncio.sleep(interval)
        if CUT[0] != collected:  # cut responses wait in reference cycles, buffers and all
            collected = CUT[0]
            gc.collect()
        if trim is not None:
            trim(0)


async def serve(
    app: web.Application,
    host: str,
    port: int,
    name: str,
    on_listening: Callable[[str], Awaitable[None]] | None = None,
    tls: ssl.SSLContext | None = None,
    answer: Callable[[web.Application], Answer] | None = None,
) -> None:
    """Serve ``app`` (HTTPS with a ``tls`` context) until SIGINT or SIGTERM, then shut down
    cleanly.  With ``answer`` (given the app, once it is set up), the connections meet the
    front first, which answers the requests ``answer`` takes and hands the others to
    ``app`` (front.py).

    Logs ``<name> listening on <url>`` once bound; ``on_listening`` gets that URL, which
    tells the real port when ``port`` is 0.
    """
    log = logging.getLogger(f"kittenfs.{name}")
    raise_open_files_limit()
    runner = Runner(app, app[LIMITS])
    await runner.setup()
    front: Front | None = None
    try:
        if answer is None:
            site = web.TCPSite(runner, host, port, backlog=1024, ssl_context=tls)
            await site.start()
            bound = runner.addresses[0][1]
        else:
            assert runner.server is not None
            front = Front(answer(app), runner.server, app[LIMITS], app[METRICS])
            listener = await asyncio.get_running_loop().create_server(
                front, host or None, port, backlog=1024, ssl=tls
            )
            bound = listener.sockets[0].getsockname()[1]
    except OSError as exc:
        await runner.cleanup()
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({reason})") from None
    url = f"{'https' if tls else 'http'}://{url_host(host)}:{bound}"
    log.info("%s listening on %s", name, url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    trimmer = asyncio.create_task(give_back_free_memory())
    try:
        if on_listening is not None:
            await on_listening(url)
        await stop.wait()
    finally:
        trimmer.cancel()
        # Stopping already: a second Ctrl-C or SIGTERM (a terminal sends SIGINT to the whole
        # process group, and `kittenfs up` adds a SIGTERM) must not reach asyncio's handler
        # after its wakeup descriptor is closed, which prints a traceback.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
        log.info("%s stopping", name)
        if front is not None:
            listener.close()
            await front.shutdown()
        await runner.cleanup()
        log.info("%s stopped", name)


def url_host(host: str) -> str:
    """Return how a URL names the address a server listens on."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
