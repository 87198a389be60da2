"""The worker's link to the master: register once, then a heartbeat every second.

A heartbeat answered 404 means the master does not know this worker (its index was lost):
the worker registers again, asking for the index it kept.  Losing and finding the master is
logged once each, not once per beat.
"""

import asyncio
import logging
import signal
from pathlib import Path

import aiohttp

from .blobstore import BlobStore
from .identity import Identity

log = logging.getLogger("kittenfs.worker")

#: A file in the data directory while a clone's blobs wait for the master to adopt them.
ADOPT_MARKER = "adopt.pending"


class MasterLink:
    """Keeps one worker registered with its master."""

    def __init__(self, master: str, url: str, identity: Identity, store: BlobStore,
                 data_dir: Path, interval: float) -> None:
        self.master = master.rstrip("/")
        self.url = url
        self.identity = identity
        self.store = store
        self.data_dir = data_dir
        self.interval = interval
        self.registered = False
        self.connected: bool | None = None
        self.adopting: asyncio.Task[None] | None = None

    def stats(self) -> dict[str, int]:
        """Return what the heartbeat reports: bytes used, free disk and key count."""
        return {"bytes_used": self.store.bytes_used, "free_bytes": self.store.free_bytes(),
                "key_count": self.store.key_count}

    async def run(self) -> None:
        """Register and beat until cancelled."""
        timeout = aiohttp.ClientTimeout(total=max(2.0, self.interval * 2))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    if not self.registered:
                        await self._register(session)
                    await self._beat(session)
                    if (self.registered and self.adopting is None
                            and (self.data_dir / ADOPT_MARKER).exists()):
                        self.adopting = asyncio.create_task(self._adopt())
                    self._connected(True, "")
                except (TimeoutError, aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
                    self._connected(False, f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self.interval)

    def _connected(self, now: bool, why: str) -> None:
        if now and self.connected is not True:
            log.info("worker %s: connected to master %s", self._name(), self.master)
        elif not now and self.connected is not False:
            log.warning("worker %s: cannot reach master %s (%s); retrying",
                        self._name(), self.master, why)
        self.connected = now

    def _name(self) -> str:
        return self.identity.id if self.identity.index is None else str(self.identity.index)

    async def _register(self, session: aiohttp.ClientSession) -> None:
        body = {"id": self.identity.id, "url": self.url, "index": self.identity.index}
        async with session.post(f"{self.master}/_workers/register", json=body) as resp:
            if resp.status == 409:
                log.error("master refused registration: %s; stopping", await resp.text())
                signal.raise_signal(signal.SIGTERM)
                return
            resp.raise_for_status()
            index = (await resp.json())["index"]
        if index != self.identity.index:
            self.identity.index = index
            await asyncio.to_thread(self.identity.save, self.data_dir)
        self.registered = True
        log.info("worker %d registered with master %s as %s", index, self.master, self.url)

    async def _adopt(self) -> None:
        """Have the master add this (cloned) worker to the replicas of the blobs it holds.

        Runs beside the heartbeats, which must go on meanwhile; on failure the next beat
        starts it again, and the marker file keeps it pending across restarts."""
        url = f"{self.master}/_workers/{self.identity.index}/adopt"
        try:
            async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as s,
                        s.post(url) as resp):
                resp.raise_for_status()
                result = await resp.json()
            (self.data_dir / ADOPT_MARKER).unlink(missing_ok=True)
            log.info("worker %s: the master adopted %d of the %d blobs held", self._name(),
                     result["adopted"], result["blobs"])
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
            log.warning("worker %s: adopt failed (%s); will retry", self._name(), exc)
        finally:
            self.adopting = None

    async def report_corrupt(self, blobs: list[dict[str, str]]) -> None:
        """Tell the master which blobs the scrub found corrupt, so it repairs their keys."""
        body = {"id": self.identity.id, "blobs": blobs}
        timeout = aiohttp.ClientTimeout(total=30)
        async with (aiohttp.ClientSession(timeout=timeout) as session,
                    session.post(f"{self.master}/_workers/corrupt", json=body) as resp):
            resp.raise_for_status()

    async def _beat(self, session: aiohttp.ClientSession) -> None:
        body = {"id": self.identity.id, "stats": self.stats()}
        async with session.post(f"{self.master}/_workers/heartbeat", json=body) as resp:
            if resp.status == 404:
                self.registered = False
                return
            resp.raise_for_status()
