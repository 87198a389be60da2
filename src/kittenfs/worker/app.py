"""The worker process: its blob store, its link to the master, and the HTTP server."""

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from ..config import WorkerConfig, masters
from ..datadir import claim
from ..logs import setup_logging
from ..server import new_app, serve, stop_process
from ..tls import client_context, server_context
from .batch_stream import track_streams
from .blobstore import BlobStore
from .clone import clone
from .guard import GUARD, Guard
from .handlers import DESCRIBE, dispatch, worker_metrics
from .heartbeat import ADOPT_MARKER, MasterLinks
from .identity import Identity
from .recovery import StoreUnusable, open_store
from .scrub import ScrubCounts, scrub_forever
from .serve import CHECKED, REPORT, STORE, RecentlyChecked, ReportOnce

log = logging.getLogger("kittenfs.worker")


def build_app(
    config: WorkerConfig,
    store: BlobStore,
    identity: Identity,
    link: MasterLinks,
    scrubbed: ScrubCounts,
) -> web.Application:
    """Return a worker's application over an open blob store and its link to the master
    (its metrics read what the scrub counts in ``scrubbed``)."""
    app = new_app(worker_metrics(store, scrubbed), config.limits)
    app[STORE] = store
    app[GUARD] = Guard(config.cluster_key, config.public_reads)
    app[REPORT] = ReportOnce(link.report_corrupt)
    app[CHECKED] = RecentlyChecked()

    def describe() -> dict[str, Any]:
        return {
            "id": identity.id,
            "index": identity.index,
            "cluster": identity.cluster,
            "key_count": store.key_count,
            "bytes_used": store.bytes_used,
        }

    app[DESCRIBE] = describe
    track_streams(app)
    app.router.add_route("*", r"/{tail:[\s\S]*}", dispatch)
    return app


def run(config: WorkerConfig) -> None:
    """Run a worker until SIGINT or SIGTERM."""
    setup_logging(config.verbose, config.log_format)
    claim(config.data)  # before anything in it is touched
    asyncio.run(_main(config))


async def _main(config: WorkerConfig) -> None:
    config.data.mkdir(parents=True, exist_ok=True)
    identity = Identity.load(config.data)
    try:
        store, _ = await open_store(
            config.data,
            identity.index is not None,
            stop_process,
            inline_max=config.inline_max,
            verify_max=config.verify_max,
            capacity=config.capacity,
        )
    except StoreUnusable as exc:
        log.critical("worker not started: %s", exc)
        raise SystemExit(1) from None
    if config.clone_from is not None and identity.index is None:
        await clone(
            masters(config.master)[0],
            config.clone_from,
            store,
            config.clone_rate,
            config.cluster_key,
            client_context(config.tls.ca),
        )
        (config.data / ADOPT_MARKER).touch()
    elif config.clone_from is not None:
        log.info(
            "--clone-from ignored: this worker is registered already (index %d)", identity.index
        )
    link = MasterLinks(
        masters(config.master),
        identity,
        store,
        config.data,
        config.heartbeat_interval,
        config.cluster_key,
        client_context(config.tls.ca),
    )
    scrubbed = ScrubCounts()
    app = build_app(config, store, identity, link, scrubbed)
    tasks: list[asyncio.Task[None]] = []

    async def listening(url: str) -> None:
        tasks.append(asyncio.create_task(link.run((config.advertise or url).rstrip("/"))))
        if config.scrub_rate > 0:
            tasks.append(
                asyncio.create_task(
                    scrub_forever(
                        store,
                        config.scrub_rate,
                        config.scrub_interval,
                        link.report_corrupt,
                        scrubbed,
                    )
                )
            )
        log.info(
            "worker id %s (index %s): %d blobs, %d bytes in %s",
            identity.id,
            identity.index,
            store.key_count,
            store.bytes_used,
            config.data,
        )

    try:
        await serve(app, config.host, config.port, "worker", listening, server_context(config.tls))
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await store.close()
