"""The master's state: everything its handlers share, built at start and closed at stop."""

import time
import uuid
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from .. import datadir
from ..config import ConfigError, MasterConfig
from ..locks import KeyLocks
from .access import Access, key_check, load_master_key
from .cache import ValueCache
from .damage import Damage
from .duties import DEAD_AFTER, Duties
from .garbage import Reaper
from .index import Index, Space, open_index
from .jobs import Jobs
from .jobs.converge import Converger, RepairQueue
from .membership import Membership
from .move import Mover
from .reader import Reader
from .replica_io import HttpTransport
from .transport import ReplicaTransport
from .write_path import Store


@dataclass
class MasterState:
    """One master's index, membership, write path, mover, reaper and worker transport."""

    config: MasterConfig
    index: Index
    membership: Membership
    store: Store
    session: aiohttp.ClientSession
    master_id: str
    started: float
    jobs: Jobs
    repairs: RepairQueue
    access: Access
    cluster_id: str
    transport: ReplicaTransport
    reaper: Reaper
    mover: Mover
    reader: Reader
    duties: Duties
    url: str = ""
    #: The port this master serves the S3 API on (None if it does not): S3 gateways
    #: forward writes there.
    s3_port: int | None = None

    @property
    def public_url(self) -> str:
        """The URL clients reach this master by: links it hands out point there (never to
        a request's own Host header, which a client chooses)."""
        return (self.config.advertise or self.url).rstrip("/")

    @property
    def damage(self) -> Damage:
        """The replicas known damaged, until the repair queue has replaced them."""
        return self.repairs.damage

    @classmethod
    async def open(cls, config: MasterConfig, session: aiohttp.ClientSession) -> "MasterState":
        """Open the index (``config.index``, by default under ``config.data``) and recover
        from any crash."""
        config.data.mkdir(parents=True, exist_ok=True)
        master_id = datadir.master_id(config.data)
        index = await open_index(config.index, config.data, master_id)
        cluster_id = await index.cluster_id(f"c-{uuid.uuid4().hex[:24]}")
        master_key = load_master_key(config.data)
        if await index.key_check(key_check(master_key)) != key_check(master_key):
            await index.close()
            raise ConfigError(
                f"{config.data / datadir.MASTER_KEY_FILE} is not the master key this index's "
                "credentials and links derive from: copy master.key from the data directory "
                "of a master that used this index (docs/operations.md)"
            )
        access = Access(
            index,
            master_key,
            config.cluster_key,
            config.admin_token,
            config.anonymous,
        )
        membership = await Membership.open(index, config.replicas, config.down_after)
        cache = ValueCache(config.cache_bytes, config.cache_value_max)
        transport = HttpTransport(session, membership.url)
        locks = KeyLocks()
        reaper = Reaper(index, membership, transport, locks, config.replaced_grace)
        store = Store(
            index,
            membership,
            transport,
            locks,
            cache,
            reaper,
            config.max_value_bytes,
            config.replica_timeout,
        )
        mover = Mover(index, membership, transport, locks, cache, reaper)
        await reaper.recover(DEAD_AFTER)
        duties = Duties(index, master_id, reaper, membership)
        repairs = RepairQueue(Converger(mover))
        reaper.lost = repairs.damage.mark
        reader = Reader(index, cache, membership, repairs.damage, transport)
        return cls(
            config,
            index,
            membership,
            store,
            session,
            master_id,
            time.time(),
            Jobs(index if index.shared else None),
            repairs,
            access,
            cluster_id,
            transport,
            reaper,
            mover,
            reader,
            duties,
        )

    async def key_health(self) -> dict[str, int]:
        """Count the keys, and those under-replicated (fewer than R good replicas on up workers) or
        misplaced (not on the workers placement prefers, e.g. written while one was down).
        Reads the whole index: this is for ``kittenfs status`` and metrics, not every request."""
        counts = {"live": 0, "unlinked": 0, "under_replicated": 0, "misplaced": 0}
        wanted = self.membership.replica_count()
        async for space, record in self.index.all_current():
            counts["live" if space is Space.LIVE else "unlinked"] += 1
            damaged = self.damage.of(record)
            if sum(self.membership.is_up(i) and i not in damaged for i in record.replicas) < wanted:
                counts["under_replicated"] += 1
            if set(record.replicas) != self.membership.preferred(record.key):
                counts["misplaced"] += 1
        return counts

    async def close(self) -> None:
        """Stop the running job, then close the index after queued writes."""
        await self.jobs.close()
        await self.repairs.close()
        await self.index.close()


#: The master's state in its application.
STATE = web.AppKey("state", MasterState)
