"""The master process: wiring of state, background tasks and the HTTP server."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ..config import MasterConfig
from ..server import new_app, serve, setup_logging
from .handlers import dispatch
from .observe import master_metrics
from .replica_io import new_session
from .state import MasterState

log = logging.getLogger("kittenfs.master")


def build_app(config: MasterConfig) -> web.Application:
    """Return the master's application; state opens on start-up and closes on clean-up."""
    app = new_app(master_metrics(lambda: app.get("state")))
    app.router.add_route("*", "/{tail:.*}", dispatch)
    app.cleanup_ctx.append(_lifecycle(config))
    return app


def _lifecycle(config: MasterConfig):  # type: ignore[no-untyped-def]
    async def context(app: web.Application) -> AsyncIterator[None]:
        session = new_session(config.replica_timeout)
        state = await MasterState.open(config, session)
        app["state"] = state
        tasks = [asyncio.create_task(state.store.reap_forever()),
                 asyncio.create_task(_watch_liveness(state))]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await state.jobs.close()  # before the session its job uses
        await session.close()
        await state.close()
    return context


async def _watch_liveness(state: MasterState) -> None:
    while True:
        await asyncio.sleep(1.0)
        state.membership.check_liveness()


def run(config: MasterConfig) -> None:
    """Run a master until SIGINT or SIGTERM."""
    setup_logging(config.verbose)
    app = build_app(config)

    async def listening(url: str) -> None:
        app["state"].url = url
        log.info("master %s: data in %s, %d replicas", app["state"].master_id, config.data,
                 config.replicas)

    asyncio.run(serve(app, config.host, config.port, "master", listening))
