"""Membership: which workers exist, which are up, and which hold a key.

Workers register once (the master assigns the next index: 0, 1, 2, ...) and then send a
heartbeat every second.  A worker whose last heartbeat is older than ``down_after`` seconds
is down; it is up again with its next heartbeat.  Registrations are durable in the index;
liveness is kept in memory only, and at start every known worker is given one grace period.

Masters that share an index (PostgreSQL) each keep their own view: a worker sends its
heartbeats to every master it knows, and each master takes in the registrations and drain
marks the others saved (``refresh``) when a worker it does not know turns up, and every
few seconds.
"""

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..errors import NotEnoughWorkers, NotFound, StateConflict
from ..placement import rank
from ..records import WorkerInfo
from .index import Index, Raced

log = logging.getLogger("kittenfs.master")

#: Changes of the workers' states remembered (the console's up/down history), newest last.
HISTORY = 200


@dataclass
class WorkerState:
    """What the master knows of one worker right now."""

    info: WorkerInfo
    last_seen: float
    last_heartbeat: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    was_up: bool = True

    def is_up(self, now: float, down_after: float) -> bool:
        """Return True if the worker was heard from within ``down_after`` seconds."""
        return now - self.last_seen < down_after


class Membership:
    """The registered workers of one master."""

    def __init__(
        self,
        index: Index,
        replicas: int,
        down_after: float = 5.0,
        workers: list[WorkerInfo] | None = None,
        draining: set[int] | None = None,
    ) -> None:
        self.index = index
        self.replicas = replicas
        self.down_after = down_after
        now = time.monotonic()
        self.workers = {info.index: WorkerState(info, now) for info in workers or []}
        self._by_id = {state.info.id: state for state in self.workers.values()}
        # New replicas avoid these.
        self.draining = (draining or set()) & set(self.workers)
        self._registering = asyncio.Lock()  # one registration at a time: indices stay unique
        #: The workers' changes of state this master saw, oldest first (``history``).
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY)

    @classmethod
    async def open(cls, index: Index, replicas: int, down_after: float = 5.0) -> "Membership":
        """Return the membership of the workers ``index`` holds (each counted up at first)."""
        return cls(index, replicas, down_after, await index.workers(), await index.draining())

    def replica_count(self) -> int:
        """Return how many replicas a write makes: the setting, capped at the number of
        workers that take new replicas (registered and not being drained)."""
        return min(self.replicas, len(self.workers) - len(self.draining))

    async def register(self, worker_id: str, url: str, wanted: int | None) -> WorkerInfo:
        """Register a worker (or recognise it again) and return its durable info.

        A worker that kept an index from an earlier registration gets it back, unless another
        worker holds it now (StateConflict).
        """
        async with self._registering:
            return await self._register(worker_id, url, wanted)

    async def refresh(self) -> None:
        """Take in the workers and drain marks the index holds now (other masters may have
        saved some), keeping what this master saw of the liveness of those it knew; not
        while this master registers one."""
        async with self._registering:
            await self._refresh()

    async def _refresh(self) -> None:
        infos, draining = await self.index.workers(), await self.index.draining()
        now = time.monotonic()
        known = self.workers
        self.workers = {}
        for info in infos:
            state = known.get(info.index)
            if state is None or state.info.id != info.id:
                state = WorkerState(info, now)  # counted up until its beats say otherwise
                log.info("worker %d (id %s), registered elsewhere, taken in", info.index, info.id)
                self._note(info.index, "registered")
            state.info = info
            self.workers[info.index] = state
        self._by_id = {state.info.id: state for state in self.workers.values()}
        self.draining = draining & set(self.workers)

    async def _register(self, worker_id: str, url: str, wanted: int | None) -> WorkerInfo:
        if worker_id not in self._by_id and self.index.shared:
            await self._refresh()  # registered through another master, perhaps
        state = self._by_id.get(worker_id)
        if state is not None and state.info.url == url:
            self._seen(state)
            return state.info
        if state is not None:
            index = state.info.index
        elif wanted is not None and wanted not in self.workers:
            index = wanted
        elif wanted is not None:
            raise StateConflict(f"worker index {wanted} belongs to another worker", "index_taken")
        else:  # never an index given before: records may still name a removed worker
            index = max(await self.index.next_worker(), max(self.workers, default=-1) + 1)
        info = WorkerInfo(
            worker_id, index, url, state.info.registered_ms if state else int(time.time() * 1000)
        )
        try:
            await self.index.save_worker(info)
        except Raced:  # another master gave this index away meanwhile
            await self._refresh()
            raise StateConflict(
                f"worker index {index} was just given to another worker; register again"
            ) from None
        fresh = WorkerState(info, time.monotonic())
        self.workers[index] = self._by_id[worker_id] = fresh
        log.info("worker %d registered at %s (id %s)", index, url, worker_id)
        self._note(index, "registered")
        return info

    def heartbeat(self, worker_id: str, stats: dict[str, Any]) -> bool:
        """Record a heartbeat; return False if the worker is unknown and must register."""
        state = self._by_id.get(worker_id)
        if state is None:
            return False
        state.stats = stats
        state.last_heartbeat = time.time()
        self._seen(state)
        return True

    def _seen(self, state: WorkerState) -> None:
        state.last_seen = time.monotonic()
        if not state.was_up:
            state.was_up = True
            log.info("worker %d is up again", state.info.index)
            self._note(state.info.index, "up")

    def suspect(self, index: int, why: str) -> None:
        """Count a worker as down until its next heartbeat: talking to it just failed."""
        state = self.workers.get(index)
        if state is not None and state.is_up(time.monotonic(), self.down_after):
            state.last_seen = float("-inf")
            state.was_up = False
            log.warning("worker %d is unreachable (%s); down until its next heartbeat", index, why)
            self._note(index, "down")

    def check_liveness(self) -> None:
        """Log each worker that has just gone down; called about once a second."""
        now = time.monotonic()
        for state in self.workers.values():
            if state.was_up and not state.is_up(now, self.down_after):
                state.was_up = False
                log.warning(
                    "worker %d at %s is down: no heartbeat for %.0f s",
                    state.info.index,
                    state.info.url,
                    now - state.last_seen,
                )
                self._note(state.info.index, "down")

    def is_up(self, index: int) -> bool:
        """Return True if worker ``index`` is registered and up."""
        state = self.workers.get(index)
        return state is not None and state.is_up(time.monotonic(), self.down_after)

    def url(self, index: int) -> str:
        """Return the URL of worker ``index``."""
        return self.workers[index].info.url

    def choose_replicas(self, key: str) -> list[int]:
        """Return the workers that will hold a new value of ``key``.

        They are the first ``replica_count()`` workers in the key's rendezvous order that are
        up: a down worker is passed over for the next one.  Raise NotEnoughWorkers if too few
        are up.
        """
        needed = self.replica_count()
        up = [index for index in self._order(key) if self.is_up(index)]
        if needed == 0 or len(up) < needed:
            raise NotEnoughWorkers(max(needed, 1), len(up))
        return up[:needed]

    def preferred(self, key: str) -> set[int]:
        """Return the workers that should hold ``key`` when every worker is up: a record on
        others (written while one was down, or before workers joined) is misplaced."""
        return set(self._order(key)[: self.replica_count()])

    def _order(self, key: str) -> list[int]:
        """Return the workers that take new replicas, in ``key``'s rendezvous order."""
        order = (self._by_id[wid].info.index for wid in rank(key, self._by_id))
        return [index for index in order if index not in self.draining]

    async def set_draining(self, index: int, draining: bool) -> None:
        """Start (or stop) draining a worker: new replicas avoid it, and rebalance empties it."""
        self._require(index)
        await self.index.set_draining(index, draining)
        if draining:
            self.draining.add(index)
        else:
            self.draining.discard(index)
        log.info("worker %d %s", index, "is being drained" if draining else "takes replicas again")

    def is_at(self, worker_id: str, url: str) -> bool:
        """Return True if the worker with this id is registered at this URL."""
        state = self._by_id.get(worker_id)
        return state is not None and state.info.url == url

    def index_of(self, worker_id: str) -> int | None:
        """Return the index of the worker with this id, or None if it is not registered."""
        state = self._by_id.get(worker_id)
        return None if state is None else state.info.index

    def require_up(self, index: int) -> None:
        """Raise NotFound if worker ``index`` is not registered, StateConflict if it is down."""
        self._require(index)
        if not self.is_up(index):
            raise StateConflict(f"worker {index} is down", "worker_down")

    def require_stopped(self, index: int) -> None:
        """Raise NotFound if worker ``index`` is not registered, StateConflict if it is up."""
        self._require(index)
        if self.is_up(index):
            raise StateConflict(f"worker {index} is up; stop its process first", "worker_up")

    async def remove(self, index: int, force: bool = False) -> None:
        """Forget a stopped worker.  Refused (StateConflict) while it holds the only copy of
        any key (no other replica is up), and, unless ``force``, while any key still names it
        (drain it first)."""
        self.require_stopped(index)
        named, only = 0, []
        async for _, record in self.index.all_current():
            if index in record.replicas:
                named += 1
                others = [i for i in record.replicas if i != index and self.is_up(i)]
                if not others:  # a copy on a worker that is down is no copy to count on
                    only.append(record.key)
        if only:
            raise StateConflict(
                f"worker {index} holds the only copy of {len(only)} "
                f"keys (for example {only[0]!r}); bring it back up and drain it first",
                "only_copy",
            )
        if named and not force:
            raise StateConflict(
                f"{named} keys still have a replica on worker "
                f"{index}; drain it first, or remove it with force and run repair",
                "worker_in_use",
            )
        self.require_stopped(index)
        state = self._require(index)
        async with self._registering:
            await self.index.remove_worker(index)
            del self.workers[index]
            del self._by_id[state.info.id]
            self.draining.discard(index)
        log.info("worker %d (%s) removed", index, state.info.url)
        self._note(index, "removed")

    def _require(self, index: int) -> WorkerState:
        state = self.workers.get(index)
        if state is None:
            raise NotFound(f"no worker {index}", "unknown_worker")
        return state

    def live_replicas(self, replicas: tuple[int, ...]) -> list[int]:
        """Return the replicas among ``replicas`` that are up, in a random order."""
        alive = [index for index in replicas if self.is_up(index)]
        random.shuffle(alive)
        return alive

    def _note(self, index: int, became: str) -> None:
        self._history.append({"worker": index, "state": became, "at": time.time()})

    def history(self) -> list[dict[str, Any]]:
        """Return the workers' changes of state this master saw since it started (the last
        HISTORY): ``{"worker", "state": "registered"|"up"|"down"|"removed", "at": unix
        seconds}``,
        oldest first.  Kept in memory only, as liveness is."""
        return list(self._history)

    def describe(self) -> list[dict[str, Any]]:
        """Return each worker's index, URL, state and last reported stats, for /_cluster."""
        now = time.monotonic()
        return [
            {
                "index": state.info.index,
                "id": state.info.id,
                "url": state.info.url,
                "state": "up" if state.is_up(now, self.down_after) else "down",
                "draining": state.info.index in self.draining,
                "last_heartbeat": state.last_heartbeat,
                "bytes_used": state.stats.get("bytes_used"),
                "free_bytes": state.stats.get("free_bytes"),
                "key_count": state.stats.get("key_count"),
            }
            for _, state in sorted(self.workers.items())
        ]
