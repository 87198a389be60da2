"""The cluster's duties, held by one master at a time: the garbage sweep, jobs (rebalance,
repair, drain, gc, and the automatic rebalance), and turning the writes in flight of masters
that died into garbage.

Every master beats in the index once a second (``Index.beat``: it is alive, and where) and
asks for the ``duties`` lease (``Index.lease``), which it holds for LEASE_SECONDS by the
engine's clock and renews at each beat.  The master holding it runs the duties; when it
dies or is cut off, the lease runs out and the next master to ask takes it, within
LEASE_SECONDS and a beat.  With LevelDB the one master always holds it.

A master that lost the lease without knowing it (paused past its end) may finish a step of a
duty it had started.  That is safe by construction, not by timing: every key change is
conditional in the index (base.Raced), a write's commit needs its pending record (a dead
master's are garbage: base.NoLongerPending), and the reaper never deletes a copy the key's
record names.  The hot-value cache of each master is checked against the index when the
index is shared (reader.py), so no duty needs to reach the others' memory.

What stays on every master: its own DELETEs' copies (deleted at once, reaper), the repair
of the damage it saw itself (repair queue), and its view of the workers (refreshed from the
index every REFRESH_EVERY seconds, besides the heartbeats each worker sends it).
"""

import asyncio
import logging
import time
from collections.abc import Callable

from ..errors import StateConflict, StoreError
from .garbage import Reaper
from .index import Index
from .membership import Membership

log = logging.getLogger("kittenfs.master")

#: The lease's name in the index.
LEASE = "duties"
#: Seconds the lease lasts without a renewal: how long the duties wait for a dead master.
LEASE_SECONDS = 6.0
#: Seconds between two beats (and lease renewals).
BEAT_EVERY = 1.0
#: Seconds without a beat after which a master is taken for dead, and its writes in flight
#: become garbage (their commits then fail: NoLongerPending).
DEAD_AFTER = 15.0
#: Seconds between two readings of the workers from a shared index.
REFRESH_EVERY = 2.0
#: Seconds between two passes turning dead masters' writes into garbage.
RECOVER_EVERY = 5.0


class Duties:
    """Whether this master holds the duties, kept up to date by ``run_forever``."""

    def __init__(
        self, index: Index, master_id: str, reaper: Reaper, membership: Membership
    ) -> None:
        self.index = index
        self.master_id = master_id
        self.reaper = reaper
        self.membership = membership
        #: The id of the master holding the duties, as last seen: a master alone on its index
        #: holds them from the start; one sharing it, once a beat has taken the lease.
        self.holder = "" if index.shared else master_id
        reaper.sweeping = self.held
        #: The masters heard from lately: (id, URL).
        self.masters: list[tuple[str, str]] = []
        self._renewed = float("-inf")  # when the lease was last renewed (monotonic)

    @property
    def held(self) -> bool:
        """True if this master holds the duties."""
        return self.holder == self.master_id

    def require(self, what: str) -> None:
        """Raise StateConflict (409 not_holding_duties) unless this master holds the duties,
        naming the master that does."""
        if not self.held:
            where = dict(self.masters).get(self.holder, "")
            raise StateConflict(
                f"{what} runs on the master that holds the cluster's duties: "
                f"{self.holder or 'none yet'}{f' at {where}' if where else ''}",
                "not_holding_duties",
            )

    async def beat(self, url: str) -> None:
        """Beat once: say this master is alive, and take or keep the lease."""
        asked = time.monotonic()
        await self.index.beat(url)
        holder = await self.index.lease(LEASE, LEASE_SECONDS)
        self.masters = await self.index.masters(DEAD_AFTER)
        if holder == self.master_id:
            self._renewed = asked
        self._hold(holder)

    def lapse(self) -> None:
        """Give the duties up if the lease may have run out unrenewed (the engine was out of
        reach): another master may hold them by now."""
        if self.held and time.monotonic() - self._renewed >= LEASE_SECONDS:
            self._hold("")

    def _hold(self, holder: str) -> None:
        was = self.held
        self.holder = holder
        if self.held != was:
            log.info(
                "master %s %s the cluster's duties",
                self.master_id,
                "now holds" if self.held else "no longer holds",
            )
        self.reaper.sweeping = self.held

    async def run_forever(self, url: Callable[[], str]) -> None:
        """Beat every BEAT_EVERY seconds; while holding the duties, turn dead masters' writes
        into garbage every RECOVER_EVERY seconds; with a shared index, read the workers
        again every REFRESH_EVERY seconds."""
        recovered = refreshed = time.monotonic()
        while True:
            try:
                await self.beat(url())
                now = time.monotonic()
                if self.held and now - recovered >= RECOVER_EVERY:
                    recovered = now
                    await self.reaper.recover(DEAD_AFTER, at_start=False)
                if self.index.shared and now - refreshed >= REFRESH_EVERY:
                    refreshed = now
                    await self.membership.refresh()
            except StoreError as exc:  # the engine is away: keep trying
                if self.held:
                    log.warning("cannot renew the duties' lease: %s", exc)
                self.lapse()
            except Exception:
                log.exception("the duties' beat failed; will retry")
                self.lapse()
            await asyncio.sleep(BEAT_EVERY)
