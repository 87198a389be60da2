"""An S3 gateway (``kittenfs s3 --master URL``): the S3 API in a process of its own, so
that it scales out beside the master.

The gateway runs the operations that only read (app.READS: GetObject, HeadObject, the
listings, HeadBucket...) itself, with the same code as a master: it checks the signature,
reads records from the master's index over the gateway link (master/gateway_link.py), and
streams the bytes straight from the workers, failing over between replicas as any read
does.  A large GET's bytes never pass through the master.

Every other request (each one writes) is forwarded to the master's own S3 port as it came,
signature and all: the master checks it and runs it, so one process still orders the
writes of a key (conditional PUTs, a Complete racing an Abort).  The gateway adds a hop to
writes, not a second writer.

The gateway reads the index and the workers as a member of the cluster (the cluster
secret).  It never learns a credential's secret: the master gives it a signing key good for
one day's scope, kept ``--key-ttl`` seconds (a revoked credential works here that long at
most).  It caches no value, so a read is never staler than the index.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from ..config import GatewayConfig
from ..credentials import Role
from ..errors import NotFound
from ..limits import body_chunks
from ..logs import setup_logging
from ..master.access import Caller
from ..master.cache import ValueCache
from ..master.index import Space
from ..master.reader import Reader
from ..master.replica_io import HttpTransport, new_session
from ..master.write_path import Store
from ..metrics import Metrics
from ..records import IndexRecord, decode
from ..server import serve
from ..tls import client_context, server_context
from . import sigv4
from .app import build_s3_app
from .auth import SigningKey
from .body import READ_CHUNK
from .errors import S3Error

log = logging.getLogger("kittenfs.s3")

#: Seconds between two looks at the master's workers (and auth settings).
REFRESH_SECONDS = 2.0
#: Seconds to wait for the master's answer about a record or a key.
MASTER_TIMEOUT = 30.0
#: Signing keys kept at most (the oldest are dropped past it).
MAX_KEYS = 10_000
#: Headers that belong to one connection, not to the request: never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "expect",
    }
)  # fmt: skip


class MasterLink:
    """The gateway's calls to its master (signed with the cluster secret by the session)."""

    def __init__(self, session: aiohttp.ClientSession, master: str) -> None:
        self.session = session
        self.master = master.rstrip("/")

    async def get(self, path: str, **params: str) -> dict[str, Any] | None:
        """Return the JSON of GET ``path``; None on 404."""
        return await self._call("GET", path, params=params)

    async def post(self, path: str, body: dict[str, str]) -> dict[str, Any] | None:
        """Return the JSON of POST ``path``; None on 404."""
        return await self._call("POST", path, json=body)

    async def _call(self, method: str, path: str, **how: Any) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(MASTER_TIMEOUT):
                async with self.session.request(method, self.master + path, **how) as answer:
                    if answer.status == 404:
                        return None
                    if answer.status != 200:
                        raise S3Error(
                            "ServiceUnavailable",
                            f"the master answered {answer.status} to {path}: "
                            f"{(await answer.text())[:200]}",
                        )
                    body: dict[str, Any] = await answer.json()
                    return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise S3Error("ServiceUnavailable", f"the master is unreachable: {exc}") from None


class RemoteRecords:
    """The master's index, read over the gateway link (live records only)."""

    #: Records change under the gateway (it keeps no cached values).
    shared = True

    def __init__(self, link: MasterLink) -> None:
        self.link = link

    async def get(self, space: Space, key: str) -> IndexRecord | None:
        if space is not Space.LIVE:
            raise ValueError(f"a gateway reads live records only, not {space}")
        found = await self.link.get("/_gateway/record", key=key)
        return None if found is None else _record(found["record"])

    async def records(
        self, space: Space, prefix: str = "", start: str = ""
    ) -> AsyncIterator[IndexRecord]:
        """Yield the live records under ``prefix`` from ``start`` on, a page at a time."""
        if space is not Space.LIVE:
            raise ValueError(f"a gateway reads live records only, not {space}")
        following: str | None = start
        while following is not None:
            page = await self.link.get("/_gateway/records", prefix=prefix, start=following)
            if page is None:
                return
            for stored in page["records"]:
                yield _record(stored)
            following = page["next"]


def _record(stored: str) -> IndexRecord:
    """Return a record sent in its stored form (records.encode)."""
    return decode(IndexRecord, stored.encode("utf-8"))


class RemoteWorkers:
    """The master's view of its workers (``GET /_cluster``), refreshed every few seconds.

    A worker that fails a read counts as down here until the next refresh."""

    def __init__(self) -> None:
        self.urls: dict[int, str] = {}
        self.up: set[int] = set()

    def update(self, cluster: dict[str, Any]) -> None:
        workers = cluster.get("workers", [])
        self.urls = {int(w["index"]): str(w["url"]) for w in workers}
        self.up = {int(w["index"]) for w in workers if w.get("state") == "up"}

    def live_replicas(self, replicas: tuple[int, ...]) -> list[int]:
        """Return the replicas that are up, in a random order (reads spread over them)."""
        alive = [index for index in replicas if index in self.up]
        random.shuffle(alive)
        return alive

    def is_up(self, index: int) -> bool:
        return index in self.up

    def suspect(self, index: int, why: str) -> None:
        log.warning("worker %d is unreachable (%s); down until the next refresh", index, why)
        self.up.discard(index)

    def url(self, index: int) -> str:
        try:
            return self.urls[index]
        except KeyError:
            raise NotFound(f"no worker {index}", "unknown_worker") from None


class SeenDamage:
    """Copies that failed a read here: later reads try them last.  The master finds and
    repairs them by its own reads and its workers' scrub; this list is the gateway's."""

    def __init__(self) -> None:
        self.damaged: dict[str, set[int]] = {}

    def mark(self, record: IndexRecord, worker: int) -> None:
        log.warning("worker %d holds no good copy of %r", worker, record.key)
        if len(self.damaged) >= MAX_KEYS:
            self.damaged.clear()
        self.damaged.setdefault(f"{record.key}@{record.version}", set()).add(worker)

    def of(self, record: IndexRecord) -> set[int]:
        return self.damaged.get(f"{record.key}@{record.version}", set())

    def suspect(self, record: IndexRecord, workers: tuple[int, ...]) -> None:
        """Nothing to do: a client's failed replicas are checked by the master."""


class RemoteKeys:
    """Signing keys from the master, kept ``ttl`` seconds; the auth settings of the master."""

    def __init__(self, link: MasterLink, ttl: float) -> None:
        self.link = link
        self.ttl = ttl
        self.enabled = True
        self.anonymous_role: Role | None = None
        self._kept: dict[tuple[str, str, str, str], tuple[float, SigningKey]] = {}

    def update(self, hello: dict[str, Any]) -> None:
        self.enabled = bool(hello["auth"])
        role = hello.get("anonymous_role")
        self.anonymous_role = Role.named(role) if role else None

    async def signing_key(self, signed: sigv4.Signed) -> SigningKey | None:
        scope = (signed.access_key, signed.date, signed.region, signed.service)
        kept = self._kept.get(scope)
        now = time.monotonic()
        if kept is not None and now - kept[0] < self.ttl:
            return kept[1]
        found = await self.link.post(
            "/_gateway/signing-key",
            dict(zip(("access_key", "date", "region", "service"), scope, strict=True)),
        )
        if found is None:
            self._kept.pop(scope, None)
            return None
        caller = Caller(found["access_key"], Role.named(found["role"]), found["prefix"])
        key = SigningKey(bytes.fromhex(found["key"]), caller)
        if len(self._kept) >= MAX_KEYS:
            self._kept.clear()
        self._kept[scope] = (now, key)
        return key


class GatewayState:
    """What the S3 operations run over in a gateway: the master's index, read over HTTP,
    and a read path to the workers.  It has no write path: app.dispatch forwards every
    operation that writes."""

    def __init__(self, index: RemoteRecords, reader: Reader) -> None:
        self.index = index
        self.reader = reader

    @property
    def store(self) -> Store:
        raise RuntimeError("an S3 gateway has no write path: writes are forwarded")


class Forwarder:
    """Send a request to the master's S3 port as it came (the master checks its signature,
    which covers its Host header) and its answer back to the client, both streamed.  A
    body without a Content-Length goes on chunked, as it came (aiohttp adds the header)."""

    def __init__(self, session: aiohttp.ClientSession, s3_url: str) -> None:
        self.session = session
        self.s3_url = s3_url.rstrip("/")

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in HOP_BY_HOP
        )
        body = body_chunks(request, READ_CHUNK) if request.body_exists else None
        target = URL(self.s3_url + request.raw_path, encoded=True)
        try:
            async with self.session.request(
                request.method, target, headers=headers, data=body, allow_redirects=False
            ) as answer:
                return await _relay(request, answer)
        except aiohttp.ClientError as exc:
            raise S3Error("ServiceUnavailable", f"the master's S3 API: {exc}") from None


async def _relay(request: web.Request, answer: aiohttp.ClientResponse) -> web.StreamResponse:
    headers = CIMultiDict(
        (name, value) for name, value in answer.headers.items() if name.lower() not in HOP_BY_HOP
    )
    response = web.StreamResponse(status=answer.status, headers=headers)
    await response.prepare(request)
    if request.method != "HEAD":
        async for chunk in answer.content.iter_any():
            await response.write(chunk)
    await response.write_eof()
    return response


def run(config: GatewayConfig) -> None:
    """Run an S3 gateway until SIGINT or SIGTERM."""
    setup_logging(config.verbose, config.log_format)
    asyncio.run(_main(config))


async def _main(config: GatewayConfig) -> None:
    tls = client_context(config.tls.ca)
    # One session to the master's gateway link and the workers (signed as a member), one
    # to the master's S3 port (the clients' own signatures).
    members = new_session(MASTER_TIMEOUT, config.cluster_key, tls)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    clients = aiohttp.ClientSession(
        timeout=timeout,
        connector=aiohttp.TCPConnector(limit=0, ssl=tls),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Content-Type", "Accept", "Accept-Encoding"),
    )
    async with members, clients:
        link = MasterLink(members, config.master)
        try:
            hello = await link.get("/_gateway/hello")
        except S3Error as exc:
            raise SystemExit(f"the S3 gateway cannot start: {exc.message}") from None
        if hello is None or not hello.get("s3_port"):
            raise SystemExit(
                f"{config.master} does not serve S3: start it with --s3-port, then the gateway"
            )
        keys = RemoteKeys(link, config.key_ttl)
        keys.update(hello)
        workers = RemoteWorkers()
        workers.update(await link.get("/_cluster") or {})
        index = RemoteRecords(link)
        reader = Reader(
            index, ValueCache(0, 0), workers, SeenDamage(), HttpTransport(members, workers.url)
        )
        master = URL(config.master)
        s3_url = f"{master.scheme}://{master.raw_host}:{hello['s3_port']}"
        metrics = Metrics("s3", lambda path: "s3")
        app = build_s3_app(
            config.limits,
            config.s3_domain,
            metrics,
            GatewayState(index, reader),
            keys,
            Forwarder(clients, s3_url),
        )
        refresh = asyncio.create_task(_refresh(link, keys, workers))
        try:
            await serve(app, config.host, config.port, "s3", tls=server_context(config.tls))
        finally:
            refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresh


async def _refresh(link: MasterLink, keys: RemoteKeys, workers: RemoteWorkers) -> None:
    """Keep the view of the master's workers and auth settings fresh."""
    while True:
        await asyncio.sleep(REFRESH_SECONDS)
        try:
            hello = await link.get("/_gateway/hello")
            cluster = await link.get("/_cluster")
        except S3Error as exc:
            log.warning("cannot refresh the view of the master: %s", exc.message)
            continue
        if hello is not None:
            keys.update(hello)
        if cluster is not None:
            workers.update(cluster)
