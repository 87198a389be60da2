"""The master process: wiring of state, background tasks and the HTTP server."""

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from ..config import ConfigError, MasterConfig
from ..datadir import claim
from ..limits import Runner
from ..logs import setup_logging
from ..server import METRICS, new_app, serve, url_host
from ..tls import client_context, server_context
from . import admin, fast_path, uploads
from .handlers import dispatch
from .index.engine import describe
from .jobs.converge import DEFAULT_CONCURRENCY
from .observe import master_metrics
from .replica_io import new_session
from .state import STATE, MasterState

log = logging.getLogger("kittenfs.master")


def build_app(config: MasterConfig) -> web.Application:
    """Return the master's application; state opens on start-up and closes on clean-up."""
    app = new_app(master_metrics(lambda: app.get(STATE)), config.limits)
    app.router.add_route("*", r"/{tail:[\s\S]*}", dispatch)
    app.cleanup_ctx.append(_lifecycle(config))
    if config.s3_port is not None:
        app.cleanup_ctx.append(_s3_api(config))
    return app


def _s3_api(config: MasterConfig):  # type: ignore[no-untyped-def]
    """Serve the S3 API (kittenfs.s3) on ``--s3-port`` over this master's state, from once
    the state is open until before it closes."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        # Only masters that serve S3 import it.
        from ..s3.app import build_s3_app
        from ..s3.auth import MasterKeys
        from ..s3.multipart import clean_forever

        state = app[STATE]
        s3 = build_s3_app(
            config.limits, config.s3_domain, app[METRICS], state, MasterKeys(state.access)
        )
        runner = Runner(s3, config.limits)
        await runner.setup()
        tls = server_context(config.tls)
        site = web.TCPSite(runner, config.host, config.s3_port, backlog=1024, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"--s3-port {config.s3_port}: cannot listen there ({exc})") from None
        port = app[STATE].s3_port = runner.addresses[0][1]
        cleaner = asyncio.create_task(clean_forever(app[STATE], config.s3_abandoned_after))
        log.info(
            "serving the S3 API at %s://%s:%d",
            "https" if tls else "http",
            url_host(config.host),
            port,
        )
        yield
        cleaner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cleaner
        await runner.cleanup()

    return context


def _lifecycle(config: MasterConfig):  # type: ignore[no-untyped-def]
    async def context(app: web.Application) -> AsyncIterator[None]:
        session = new_session(
            config.replica_timeout, config.cluster_key, client_context(config.tls.ca)
        )
        state = await MasterState.open(config, session)
        app[STATE] = state
        state.duties.changed = lambda held: admin.duties_changed(state, held)
        tasks = [
            asyncio.create_task(state.reaper.reap_forever()),
            asyncio.create_task(state.repairs.run_forever()),
            asyncio.create_task(_watch_liveness(state)),
            asyncio.create_task(state.duties.run_forever(lambda: state.public_url)),
            asyncio.create_task(uploads.clean_forever(state)),
        ]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await admin.stop_following()
        await state.jobs.close()  # before the session its job uses
        await session.close()
        await state.close()

    return context


async def _watch_liveness(state: MasterState) -> None:
    """Notice workers going down, and start a rebalance when ``--auto-rebalance`` says so."""
    seen = changed = None
    while True:
        await asyncio.sleep(1.0)
        state.membership.check_liveness()
        up = frozenset(i for i in state.membership.workers if state.membership.is_up(i))
        if seen is not None and up != seen:
            changed = time.monotonic()
        seen = up
        delay = state.config.auto_rebalance
        if (
            delay
            and changed is not None
            and time.monotonic() - changed >= delay
            and state.jobs.running() is None
            and state.duties.held
        ):
            changed = None
            log.info("the up workers changed %.0f s ago: starting a rebalance", delay)
            await admin.start(
                state,
                "rebalance",
                {
                    "dry_run": False,
                    "rate": 0,
                    "bandwidth": 0,
                    "concurrency": DEFAULT_CONCURRENCY,
                    "auto": True,
                },
            )


def run(config: MasterConfig) -> None:
    """Run a master until SIGINT or SIGTERM."""
    setup_logging(config.verbose, config.log_format)
    claim(config.data)  # before anything in it is touched
    app = build_app(config)

    async def listening(url: str) -> None:
        app[STATE].url = url
        log.info(
            "master %s: data in %s, index %s, %d replicas",
            app[STATE].master_id,
            config.data,
            describe(config.index, config.data),
            config.replicas,
        )
        if config.host in ("0.0.0.0", "::", "") and config.advertise is None:
            log.warning(
                "listening on every address without --advertise: the links this "
                "master hands out point to %s, which other machines cannot reach",
                url,
            )

    asyncio.run(
        serve(
            app,
            config.host,
            config.port,
            "master",
            listening,
            server_context(config.tls),
            lambda app: functools.partial(fast_path.answer, app[STATE]),
        )
    )
