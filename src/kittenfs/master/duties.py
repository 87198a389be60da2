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
from collections.abc import Awaitable, Callable

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
        reaper.sweeping = lambda: self.held
        #: The masters heard from lately: (id, URL).
        self.masters: list[tuple[str, str]] = []
        self._renewed = float("-inf")  # when the lease was last renewed (monotonic)
        #: Called with the new state whenever this master takes or gives up the duties
        #: (``held`` differs from what it was last told), and every RECOVER_EVERY seconds
        #: while it holds them (jobs: a record left by a master that lost them).
        self.changed: Callable[[bool], None] = lambda held: None
        self._told = self.held

    @property
    def held(self) -> bool:
        """True if this master holds the duties: the last beat said so, and renewed the
        lease less than LEASE_SECONDS ago (a beat stuck on a slow engine lets it go)."""
        if not self.index.shared:
            return self.holder == self.master_id
        fresh = time.monotonic() - self._renewed < LEASE_SECONDS - BEAT_EVERY
        return self.holder == self.master_id and fresh

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
        """Say so once the duties are given up for want of a renewal (the engine was out of
        reach): another master may hold them by now."""
        if self.holder == self.master_id and not self.held:
            self._hold("")

    def _hold(self, holder: str) -> None:
        self.holder = holder
        self._tell()

    def _tell(self) -> None:
        """Tell ``changed`` (and the log) if ``held`` is not what it was last told."""
        if self.held != self._told:
            self._told = self.held
            log.info(
                "master %s %s the cluster's duties",
                self.master_id,
                "now holds" if self.held else "no longer holds",
            )
            self.changed(self.held)

    async def run_forever(self, url: Callable[[], str]) -> None:
        """Beat every BEAT_EVERY seconds, and beside the beats (which nothing may hold up):
        while holding the duties, turn dead masters' writes into garbage every RECOVER_EVERY
        seconds; with a shared index, read the workers again every REFRESH_EVERY seconds."""
        tasks = [asyncio.create_task(self._every("recovery", RECOVER_EVERY, self._recover))]
        if self.index.shared:
            refresh = self._every("workers' refresh", REFRESH_EVERY, self.membership.refresh)
            tasks.append(asyncio.create_task(refresh))
        try:
            await self._every("beat", BEAT_EVERY, lambda: self._beat_in_time(url()), self.lapse)
        finally:
            for task in tasks:
                task.cancel()

    async def _beat_in_time(self, url: str) -> None:
        """Beat, but give up (TimeoutError: the duties lapse) once the lease it would renew
        has run out here: a beat stuck on a slow engine must not leave a job running beside
        the next holder's."""
        await asyncio.wait_for(self.beat(url), LEASE_SECONDS - BEAT_EVERY)

    async def _recover(self) -> None:
        self._tell()
        if self.held:
            await self.reaper.recover(DEAD_AFTER, at_start=False)
            if self.index.shared:
                self.changed(True)

    async def _every(
        self,
        name: str,
        seconds: float,
        step: Callable[[], Awaitable[object]],
        failed: Callable[[], None] = lambda: None,
    ) -> None:
        """Run ``step`` every ``seconds`` for ever, logging (and calling ``failed`` on) each
        failure: the engine may be away for a while."""
        while True:
            try:
                await step()
            except (StoreError, TimeoutError) as exc:  # the engine is away: keep trying
                log.warning("the %s failed: %s", name, exc)
                failed()
            except Exception:
                log.exception("the %s failed; will retry", name)
                failed()
            await asyncio.sleep(seconds)
