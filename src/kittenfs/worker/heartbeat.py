"""The worker's link to its masters: register once with each, then a heartbeat to each
every second.

A heartbeat answered 404 means the master does not know this worker (its index was lost):
the worker registers again, asking for the index it kept.  Losing and finding the master is
logged once each, not once per beat.

Masters that share an index (PostgreSQL) each keep their own view of which workers are up,
so a worker given several (``--master URL1,URL2``) beats to every one (``MasterLinks``).  It
registers with one at a time, so that it gets one index, which it then asks every other for.
"""

import asyncio
import logging
import signal
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from ..clusterauth import session_middlewares
from ..signing import ClusterKey
from .blobstore import BlobStore
from .identity import Identity

log = logging.getLogger("kittenfs.worker")

#: Files in the data directory while the master has yet to answer a request about this
#: worker's blobs, by the route they ask for: adopt a clone's blobs as replicas; recheck
#: every key this worker should hold (its store lost some, worker/recovery.py).
ADOPT_MARKER = "adopt.pending"
RECHECK_MARKER = "recheck.pending"
PENDING = {ADOPT_MARKER: "adopt", RECHECK_MARKER: "recheck"}


class MasterLink:
    """Keeps one worker registered with its master."""

    def __init__(
        self,
        master: str,
        identity: Identity,
        store: BlobStore,
        data_dir: Path,
        interval: float,
        key: ClusterKey | None,
        tls: ssl.SSLContext | None = None,
        registering: asyncio.Lock | None = None,
        asks: bool = True,
    ) -> None:
        self.master = master.rstrip("/")
        #: Held while registering, shared by the links to every master.
        self.registering = registering or asyncio.Lock()
        #: Whether this link makes the pending requests (adopt, recheck): one link does.
        self.asks = asks
        self.key = key
        self.tls = tls
        self.url = ""  # where the master reaches this worker: known once it listens
        self.identity = identity
        self.store = store
        self.data_dir = data_dir
        self.interval = interval
        self.registered = False
        self.connected: bool | None = None
        self.asking: dict[str, asyncio.Task[None]] = {}  # marker -> the request under way

    def stats(self) -> dict[str, int]:
        """Return what the heartbeat reports: bytes used, free disk and key count."""
        return {
            "bytes_used": self.store.bytes_used,
            "free_bytes": self.store.free_bytes(),
            "key_count": self.store.key_count,
        }

    def session(self, total: float) -> aiohttp.ClientSession:
        """Return a session to the master whose requests are signed with the cluster secret
        (and whose certificate, over HTTPS, is checked against the CA)."""
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=total),
            connector=aiohttp.TCPConnector(ssl=self.tls or True),
            middlewares=session_middlewares(self.key),
        )

    async def run(self, url: str) -> None:
        """Register (as reachable at ``url``) and beat until cancelled, or until the master
        refuses this worker for good (another cluster's master, a wrong cluster secret, an
        index taken): then the worker stops, with the reason in one line of its log."""
        self.url = url
        async with self.session(max(2.0, self.interval * 2)) as session:
            while True:
                try:
                    if not self.registered:
                        async with self.registering:
                            await self._register(session)
                    await self._beat(session)
                    self._ask_pending()
                    self._connected(True, "")
                except Refused as exc:
                    log.error("worker %s: %s; stopping", self._name(), exc)
                    signal.raise_signal(signal.SIGTERM)
                    return
                except (TimeoutError, aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
                    self._connected(False, f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self.interval)

    def _connected(self, now: bool, why: str) -> None:
        if now and self.connected is not True:
            log.info("worker %s: connected to master %s", self._name(), self.master)
        elif not now and self.connected is not False:
            log.warning(
                "worker %s: cannot reach master %s (%s); retrying", self._name(), self.master, why
            )
        self.connected = now

    def _name(self) -> str:
        return self.identity.id if self.identity.index is None else str(self.identity.index)

    async def _register(self, session: aiohttp.ClientSession) -> None:
        body = {
            "id": self.identity.id,
            "url": self.url,
            "index": self.identity.index,
            "cluster": self.identity.cluster,
        }
        async with session.post(f"{self.master}/_workers/register", json=body) as resp:
            answer = await resp.json() if resp.content_type == "application/json" else {}
            _refused(resp.status, answer, self.master)
            resp.raise_for_status()
        index, cluster = answer["index"], answer.get("cluster")
        if self.identity.cluster not in (None, cluster):
            raise Refused(
                f"{self.master} is the master of cluster {cluster}, and this worker "
                f"belongs to cluster {self.identity.cluster}"
            )
        if self.key is not None and not answer.get("cluster_auth"):
            raise Refused(
                f"{self.master} has no cluster secret and this worker has one: "
                "give both the same --cluster-secret-file"
            )
        if (index, cluster) != (self.identity.index, self.identity.cluster):
            self.identity.index, self.identity.cluster = index, cluster
            await asyncio.to_thread(self.identity.save, self.data_dir)
        self.registered = True
        log.info(
            "worker %d registered with master %s (cluster %s) as %s",
            index,
            self.master,
            cluster,
            self.url,
        )

    def _ask_pending(self) -> None:
        """Start each pending request (a marker file) that is not under way already."""
        for marker in PENDING:
            if (
                self.asks
                and self.registered
                and marker not in self.asking
                and (self.data_dir / marker).exists()
            ):
                self.asking[marker] = asyncio.create_task(self._ask(marker))

    async def _ask(self, marker: str) -> None:
        """Make a pending request of the master (adopt: add this cloned worker to the
        replicas of the blobs it holds; recheck: check every key it should hold).

        Runs beside the heartbeats, which must go on meanwhile; on failure the next beat
        starts it again, and the marker file keeps it pending across restarts."""
        action = PENDING[marker]
        url = f"{self.master}/_workers/{self.identity.index}/{action}"
        try:
            async with self.session(3600) as s, s.post(url) as resp:
                resp.raise_for_status()
                result = await resp.json()
            (self.data_dir / marker).unlink(missing_ok=True)
            log.info("worker %s: the master took the %s: %s", self._name(), action, result)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
            log.warning("worker %s: %s failed (%s); will retry", self._name(), action, exc)
        finally:
            del self.asking[marker]

    async def report_corrupt(self, blobs: list[dict[str, str]]) -> None:
        """Tell the master which blobs the scrub found corrupt, so it repairs their keys."""
        body = {"id": self.identity.id, "blobs": blobs}
        async with (
            self.session(30) as session,
            session.post(f"{self.master}/_workers/corrupt", json=body) as resp,
        ):
            resp.raise_for_status()

    async def _beat(self, session: aiohttp.ClientSession) -> None:
        body = {"id": self.identity.id, "stats": self.stats()}
        async with session.post(f"{self.master}/_workers/heartbeat", json=body) as resp:
            if resp.status == 404:
                self.registered = False
                return
            if resp.status == 401:
                _refused(401, await resp.json(), self.master)
            resp.raise_for_status()


class MasterLinks:
    """The worker's links to every master it knows, all kept at once; the first makes the
    pending requests, and reports go to the first that takes them."""

    def __init__(
        self,
        masters: list[str],
        identity: Identity,
        store: BlobStore,
        data_dir: Path,
        interval: float,
        key: ClusterKey | None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        registering = asyncio.Lock()
        self.links = [
            MasterLink(
                master, identity, store, data_dir, interval, key, tls, registering, asks=i == 0
            )
            for i, master in enumerate(masters)
        ]

    async def run(self, url: str) -> None:
        """Keep every link (see MasterLink.run) until cancelled."""
        await asyncio.gather(*(link.run(url) for link in self.links))

    async def report_corrupt(self, blobs: list[dict[str, str]]) -> None:
        """Report corrupt blobs to the first master that takes the report."""
        for link in self.links[:-1]:
            try:
                await link.report_corrupt(blobs)
                return
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                log.warning(
                    "corrupt blobs not reported to %s (%s); trying the next", link.master, exc
                )
        await self.links[-1].report_corrupt(blobs)


class Refused(Exception):
    """The master refused this worker for a reason that retrying will not change."""


def _refused(status: int, answer: dict[str, Any], master: str) -> None:
    """Raise Refused for a registration the master refused for good: another cluster, an
    index taken (409), or a cluster secret it does not share (401)."""
    if status == 401:
        raise Refused(f"{master} refused this worker's cluster secret: {answer.get('detail', '')}")
    if status == 409 and answer.get("error") in ("wrong_cluster", "index_taken"):
        raise Refused(f"{master} refused the registration: {answer.get('detail', '')}")
    if status == 409:  # the master could not reach this worker at its URL: try again
        raise aiohttp.ClientError(f"registration refused: {answer.get('detail', '')}")
