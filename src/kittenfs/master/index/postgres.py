"""The master's index in PostgreSQL (``PostgresIndex``): the ``Index`` interface (base.py)
over any PostgreSQL 13 or later, through asyncpg.  The tables, and the function every key
change goes through, are in pg_schema.py.

Records are stored as records.encode() gives them (the same bytes as in LevelDB).  Keys are
``text COLLATE "C"``: in a UTF8 database that orders them by their UTF-8 bytes, as LevelDB
does, so listings and pages agree between the engines.

Durability: every change is one transaction, committed with ``synchronous_commit = on`` (set
for each connection), so a commit has returned only once the engine's WAL is flushed.

Several masters may share one database.  Writes to one key are serialized by the engine:
every key change is conditional (``kfs_change``, raising base.Raced), and a write's commit
needs its pending record, which carries the master that runs it (``owner``).

A commit whose connection breaks has an unknown outcome: it may have landed.  Callers treat a
failed commit as not landed and abandon the write, so ``abandon_write`` here turns a pending
record into garbage only if it is still there (a landed commit removed it), and the reaper
never deletes a replica the live record names (garbage.py).  Unreachable engines raise
errors.IndexUnavailable (503).
"""

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import asyncpg

from ...credentials import Credential
from ...errors import IndexUnavailable
from ...placement import blob_id
from ...records import IndexRecord, WorkerInfo, decode, encode
from .base import Entry, EntryId, Kind, NoLongerPending, Raced, Space, held_records
from .pg_schema import KEY_CHANGED, MIGRATIONS, PENDING_GONE

T = TypeVar("T")

#: Rows one page of a scan reads.
PAGE = 1000
#: Seconds any one statement may take before the request fails (503) instead of hanging.
STATEMENT_TIMEOUT = 30.0
#: Connections one master keeps to the engine at most.
POOL_SIZE = 16
#: The name a master's connections carry (pg_stat_activity.application_name).
APPLICATION = "kittenfs-master"
#: The advisory lock that serializes schema migrations between masters starting together.
MIGRATION_LOCK = 0x6B667321

#: The errors that mean the engine could not be reached or did not answer.
_UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)

#: A whole version's garbage entry has this worker.
WHOLE = -1


def _space(space: Space) -> str:
    return space.value[:1].decode("ascii")


def _held(code: str) -> Space:
    return Space.LIVE if code == "k" else Space.UNLINKED


def _entry(blob: str, worker: int) -> EntryId:
    return f"{worker}:{blob}".encode("ascii")


def _parse_entry(entry: EntryId) -> tuple[str, int]:
    worker, _, blob = entry.decode("ascii").partition(":")
    return blob, int(worker)


def _blob(record: IndexRecord) -> str:
    return blob_id(record.key, record.version)


def prefix_end(prefix: str) -> str | None:
    """Return the least string above every string that starts with ``prefix`` (None if there
    is none): code point order is UTF-8 byte order, which COLLATE "C" compares."""
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    following = ord(stripped[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are not characters
        following = 0xE000
    return stripped[:-1] + chr(following)


@contextmanager
def _reaching(url: str) -> Iterator[None]:
    """Turn the engine's unreachability into IndexUnavailable (503)."""
    try:
        yield
    except _UNREACHABLE as exc:
        raise IndexUnavailable(
            f"the index at {redact(url)} cannot be reached: {type(exc).__name__}: {exc}"
        ) from exc


def redact(url: str) -> str:
    """Return ``url`` without its password, for logs and errors."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':', 1)[0]}@{tail}"


class PostgresIndex:
    """The Index (base.py) in a PostgreSQL database; open it with :meth:`open`."""

    #: Other masters may use the same index at once.
    shared = True

    def __init__(self, pool: asyncpg.Pool, url: str, owner: str) -> None:
        self._pool = pool
        self.url = url
        #: The master using this index: its writes in flight carry this id.
        self.owner = owner

    @classmethod
    async def open(cls, url: str, owner: str = "") -> "PostgresIndex":
        """Connect to the database at ``url`` and bring its schema up to date; ``owner`` is
        the id of the master that uses it.

        Raise IndexUnavailable if it cannot be reached, ValueError if it is not a UTF8
        database or its schema is newer than this kittenFS knows."""
        with _reaching(url):
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=POOL_SIZE,
                command_timeout=STATEMENT_TIMEOUT,
                reset=_keep_session,
                server_settings={
                    "synchronous_commit": "on",
                    # A master paused inside a transaction must not hold its row locks for
                    # ever: the engine ends such a transaction (and its connection) after 30 s.
                    "idle_in_transaction_session_timeout": "30000",
                    "application_name": APPLICATION,
                },
            )
        index = cls(pool, url, owner)
        try:
            await index._migrate()
        except BaseException:
            await pool.close()
            raise
        return index

    async def _migrate(self) -> None:
        async with self._transaction() as conn:
            encoding = await conn.fetchval("SHOW server_encoding")
            if encoding != "UTF8":
                raise ValueError(f"{redact(self.url)}: the database must be UTF8, not {encoding}")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS kfs_settings "
                "(name text PRIMARY KEY, value text NOT NULL)"
            )
            found = await conn.fetchval("SELECT value FROM kfs_settings WHERE name = 'schema'")
            version = int(found or 0)
            if version > len(MIGRATIONS):
                raise ValueError(
                    f"{redact(self.url)}: schema version {version} is newer than this "
                    f"kittenfs knows ({len(MIGRATIONS)}); upgrade kittenfs"
                )
            for migration in MIGRATIONS[version:]:
                await conn.execute(migration)
            await conn.execute(
                "INSERT INTO kfs_settings VALUES ('schema', $1) "
                "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                str(len(MIGRATIONS)),
            )

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        """One connection in one transaction, committed when the block ends without error."""
        with _reaching(self.url):
            async with self._pool.acquire() as conn, conn.transaction():
                yield conn

    async def _call(self, method: Callable[..., Awaitable[T]], *args: Any) -> T:
        with _reaching(self.url):
            return await method(*args)

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        return await self._call(self._pool.fetch, query, *args)

    async def _fetchval(self, query: str, *args: Any) -> Any:
        return await self._call(self._pool.fetchval, query, *args)

    async def _execute(self, query: str, *args: Any) -> str:
        return await self._call(self._pool.execute, query, *args)

    # Keys and their records.

    async def get(self, space: Space, key: str) -> IndexRecord | None:
        """Return the record of ``key`` in a key-named space (LIVE or UNLINKED), or None."""
        raw = await self._fetchval(
            "SELECT record FROM kfs_records WHERE key = $1 AND space = $2", key, _space(space)
        )
        return None if raw is None else decode(IndexRecord, raw)

    async def current(self, key: str) -> tuple[Space, IndexRecord] | None:
        """Return the key's live or unlinked record, with its space, or None."""
        rows = await self._fetch("SELECT space, record FROM kfs_records WHERE key = $1", key)
        if not rows:
            return None
        return _held(rows[0]["space"]), decode(IndexRecord, rows[0]["record"])

    def all_current(self) -> AsyncIterator[tuple[Space, IndexRecord]]:
        """Yield every live, then every unlinked, record with its space, a page at a time."""
        return held_records(self)

    async def records(
        self, space: Space, prefix: str = "", start: str = ""
    ) -> AsyncIterator[IndexRecord]:
        """Yield the records of a space in key order, from ``start`` on, under ``prefix``.
        Each page is read on its own, so the scan sees changes made while it runs (as a
        listing by pages does), never a key twice or out of order."""
        low, high = max(prefix, start), prefix_end(prefix)
        while True:
            rows = await self._fetch(
                "SELECT key, record FROM kfs_records WHERE space = $1 AND key >= $2 "
                "AND ($3::text IS NULL OR key < $3) ORDER BY key LIMIT $4",
                _space(space),
                low,
                high,
                PAGE,
            )
            for row in rows:
                yield decode(IndexRecord, row["record"])
            if len(rows) < PAGE:
                return
            low = rows[-1]["key"] + "\x01"  # keys hold no NUL: nothing sorts in between

    async def keys(
        self, space: Space, prefix: str, start: str, limit: int
    ) -> tuple[list[str], str]:
        """Return up to ``limit`` keys of a space under ``prefix`` from ``start`` on, and the
        first key of the next page ("" on the last page)."""
        rows = await self._fetch(
            "SELECT key FROM kfs_records WHERE space = $1 AND key >= $2 "
            "AND ($3::text IS NULL OR key < $3) ORDER BY key LIMIT $4",
            _space(space),
            max(prefix, start),
            prefix_end(prefix),
            limit + 1,
        )
        found = [row["key"] for row in rows]
        return (found[:limit], found[limit]) if len(found) > limit else (found, "")

    # The write path, moves and garbage.

    async def begin_write(self, pending: IndexRecord) -> None:
        """Record a write as in flight before any replica receives a byte."""
        await self._begin(pending, move=False)

    async def begin_move(self, move: IndexRecord) -> None:
        """Record a move's copies (``move.replicas``) as in flight before any is made;
        Raced if a move of this version is in flight already (another master's)."""
        await self._begin(move, move=True)

    async def _begin(self, record: IndexRecord, move: bool) -> None:
        status = await self._execute(
            "INSERT INTO kfs_pending VALUES ($1, $2, $3, $4) ON CONFLICT (blob, move) DO NOTHING",
            _blob(record),
            move,
            self.owner,
            encode(record),
        )
        if status == "INSERT 0 0":
            raise Raced(f"a {'move' if move else 'write'} of {record.key!r} is in flight already")

    async def commit_write(self, record: IndexRecord, replaced: list[IndexRecord]) -> None:
        """Make ``record`` the key's live value; the versions it replaces become garbage.
        Raced if ``replaced`` is not the key's record now, or the write is not pending."""
        await self._change(
            record.key,
            replaced[0] if replaced else None,
            Space.LIVE,
            record,
            pending=(_blob(record), False),
            garbage=[(_blob(old), WHOLE, old) for old in replaced],
        )

    async def abandon_write(self, pending: IndexRecord) -> None:
        """Turn a failed write's pending record into garbage, for replicas not yet cleaned;
        nothing, if the record is gone (its commit landed after all)."""
        await self._execute(
            """
            WITH gone AS (
                DELETE FROM kfs_pending WHERE blob = $1 AND NOT move AND record = $2
                RETURNING blob
            )
            INSERT INTO kfs_garbage SELECT blob, -1, $2 FROM gone
            ON CONFLICT (blob, worker) DO UPDATE SET record = EXCLUDED.record
            """,
            _blob(pending),
            encode(pending),
        )

    async def move_in_flight(self, record: IndexRecord) -> tuple[int, ...]:
        """Return the workers that a move in flight is copying ``record``'s version to."""
        raw = await self._fetchval(
            "SELECT record FROM kfs_pending WHERE blob = $1 AND move", _blob(record)
        )
        return () if raw is None else decode(IndexRecord, raw).replicas

    async def commit_move(
        self, space: Space, record: IndexRecord, moved: IndexRecord, dropped: tuple[int, ...]
    ) -> None:
        """Switch a key's record to ``moved``; each dropped replica gets its own garbage
        entry, stamped now so the reaper gives reads already sent there their grace.  Raced
        if the key's record is no longer ``record`` in ``space``, or the move is not pending."""
        await self._change(
            record.key,
            record,
            space,
            moved,
            pending=(_blob(record), True),
            garbage=_replica_garbage(record, dropped, int(time.time() * 1000)),
            expected_space=space,
        )

    async def abandon_move(self, move: IndexRecord) -> list[tuple[EntryId, IndexRecord]]:
        """Turn a failed move's copies into one garbage entry each; return the entries."""
        entries = _replica_garbage(move, move.replicas, 0)
        async with self._transaction() as conn:
            if not await conn.fetchval(
                "WITH gone AS (DELETE FROM kfs_pending WHERE blob = $1 AND move AND record = $2 "
                "RETURNING 1) SELECT count(*) FROM gone",
                _blob(move),
                encode(move),
            ):
                return []  # committed after all, or abandoned already
            await _put_garbage(conn, entries)
        return [(_entry(blob, worker), record) for blob, worker, record in entries]

    async def update(self, space: Space, record: IndexRecord, updated: IndexRecord) -> None:
        """Replace a key's record ``record`` in ``space`` with ``updated`` (the same version
        on other replicas)."""
        await self._change(record.key, record, space, updated, expected_space=space)

    async def unlink(self, record: IndexRecord) -> None:
        """Hide a live value from reads and listing, keeping its bytes."""
        await self._change(record.key, record, Space.UNLINKED, record, expected_space=Space.LIVE)

    async def remove(self, record: IndexRecord) -> None:
        """Remove a live or unlinked value from the index; its replicas become garbage."""
        await self._change(
            record.key, record, None, record, garbage=[(_blob(record), WHOLE, record)]
        )

    async def _change(
        self,
        key: str,
        expected: IndexRecord | None,
        space: Space | None,
        record: IndexRecord,
        pending: tuple[str, bool] | None = None,
        garbage: list[tuple[str, int, IndexRecord]] | None = None,
        expected_space: Space | None = None,
    ) -> None:
        """Change ``key``'s record through kfs_change (pg_schema.py): to ``record`` in
        ``space`` (None: remove it), if it still has ``expected``'s version and replicas
        (None: the key has no record) and, given, ``expected_space``; dropping this master's
        ``pending`` record (blob, move) and adding ``garbage`` (blob, worker, record).
        Otherwise raise Raced (NoLongerPending if the pending record is gone)."""
        entries = garbage or []
        try:
            await self._execute(
                "SELECT kfs_change($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                key,
                expected.version if expected else None,
                list(expected.replicas) if expected else None,
                _space(expected_space) if expected_space else None,
                _space(space) if space else None,
                record.version,
                list(record.replicas),
                encode(record),
                pending[0] if pending else None,
                pending[1] if pending else None,
                self.owner,
                [blob for blob, _, _ in entries],
                [worker for _, worker, _ in entries],
                [encode(old) for _, _, old in entries],
            )
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == KEY_CHANGED:
                raise Raced(str(exc)) from None
            if exc.sqlstate == PENDING_GONE:
                raise NoLongerPending(str(exc)) from None
            raise

    async def owned(self, blob: str) -> bool:
        """Return True if a pending record or a garbage entry exists for ``blob``."""
        found: bool = await self._fetchval(
            "SELECT EXISTS (SELECT 1 FROM kfs_pending WHERE blob = $1) "
            "OR EXISTS (SELECT 1 FROM kfs_garbage WHERE blob = $1)",
            blob,
        )
        return found

    async def garbage(self) -> list[tuple[EntryId, IndexRecord]]:
        """Return every garbage entry as (its id, its record)."""
        rows = await self._fetch(
            "SELECT blob, worker, record FROM kfs_garbage ORDER BY blob, worker"
        )
        return [(_entry(r["blob"], r["worker"]), decode(IndexRecord, r["record"])) for r in rows]

    async def garbage_entry(self, entry: EntryId) -> IndexRecord | None:
        """Return the garbage entry stored under ``entry`` now, or None."""
        raw = await self._fetchval(
            "SELECT record FROM kfs_garbage WHERE blob = $1 AND worker = $2", *_parse_entry(entry)
        )
        return None if raw is None else decode(IndexRecord, raw)

    async def forget(self, entry: EntryId) -> None:
        """Drop one garbage entry, by its id, once its replicas have been cleaned."""
        await self._execute(
            "DELETE FROM kfs_garbage WHERE blob = $1 AND worker = $2", *_parse_entry(entry)
        )

    async def forget_garbage(self, record: IndexRecord) -> None:
        """Drop a version's garbage record whose replicas have all been cleaned."""
        await self.forget(_entry(_blob(record), WHOLE))

    async def pending_to_garbage(self, dead_after: float, at_start: bool = True) -> int:
        """Turn into garbage the writes and moves in flight of masters not heard from for
        ``dead_after`` seconds (or unknown: a copied index's) and, ``at_start``, of this
        master (left by a crash)."""
        rows = await self._fetch(
            "SELECT move, record FROM kfs_pending AS p WHERE owner = $1 "
            "OR (owner <> $3 AND NOT EXISTS (SELECT 1 FROM kfs_masters AS m "
            "WHERE m.id = p.owner AND m.seen > now() - make_interval(secs => $2))) "
            "ORDER BY blob, move",
            self.owner if at_start else None,
            dead_after,
            self.owner,
        )
        for row in rows:
            record = decode(IndexRecord, row["record"])
            if row["move"]:
                await self.abandon_move(record)
            else:
                await self.abandon_write(record)
        return len(rows)

    async def load(
        self, records: list[IndexRecord], workers: list[WorkerInfo], cluster: str | None
    ) -> None:
        """Write a rebuilt index's live records, workers and cluster id, all in one
        transaction: a load cut off leaves nothing."""
        async with self._transaction() as conn:
            if cluster is not None:
                await conn.execute(
                    "INSERT INTO kfs_settings VALUES ('cluster', $1) ON CONFLICT DO NOTHING",
                    cluster,
                )
            for info in workers:
                await _save_worker(conn, info)
            for start in range(0, len(records), PAGE):
                page = records[start : start + PAGE]
                await conn.execute(
                    "INSERT INTO kfs_records SELECT key, 'k', version, "
                    "ARRAY(SELECT jsonb_array_elements_text(replicas)::integer), record "
                    "FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::bytea[]) "
                    "AS loaded(key, version, replicas, record) "
                    "ON CONFLICT (key) DO UPDATE SET space = 'k', version = EXCLUDED.version, "
                    "replicas = EXCLUDED.replicas, record = EXCLUDED.record",
                    [r.key for r in page],
                    [r.version for r in page],
                    [json.dumps(list(r.replicas)) for r in page],
                    [encode(r) for r in page],
                )

    # Workers.

    async def workers(self) -> list[WorkerInfo]:
        """Return every registered worker, by index."""
        rows = await self._fetch("SELECT info FROM kfs_workers ORDER BY idx")
        return [decode(WorkerInfo, row["info"]) for row in rows]

    async def save_worker(self, info: WorkerInfo) -> None:
        """Persist a worker's registration, and that its index is never to be given again;
        Raced if the index is another worker's."""
        async with self._transaction() as conn:
            await _save_worker(conn, info)

    async def next_worker(self) -> int:
        """Return the lowest index never given to a worker (removed ones included)."""
        found: int = await self._fetchval(
            "SELECT COALESCE((SELECT value::integer FROM kfs_settings WHERE name = 'next_worker'), "
            "(SELECT max(idx) + 1 FROM kfs_workers), 0)"
        )
        return found

    async def draining(self) -> set[int]:
        """Return the indices of the workers being drained."""
        return {row["idx"] for row in await self._fetch("SELECT idx FROM kfs_draining")}

    async def set_draining(self, index: int, draining: bool) -> None:
        """Mark a worker as being drained (or not), durably."""
        if draining:
            await self._execute(
                "INSERT INTO kfs_draining VALUES ($1) ON CONFLICT DO NOTHING", index
            )
        else:
            await self._execute("DELETE FROM kfs_draining WHERE idx = $1", index)

    async def remove_worker(self, index: int) -> None:
        """Forget a worker: its registration and its drain mark."""
        await self._execute(
            "WITH mark AS (DELETE FROM kfs_draining WHERE idx = $1) "
            "DELETE FROM kfs_workers WHERE idx = $1",
            index,
        )

    # Credentials and ids.

    async def credential(self, access_key: str) -> Credential | None:
        """Return the credential with this access key, or None."""
        raw = await self._fetchval(
            "SELECT credential FROM kfs_credentials WHERE access_key = $1", access_key
        )
        return None if raw is None else decode(Credential, raw)

    async def credentials(self) -> list[Credential]:
        """Return every credential, by access key."""
        rows = await self._fetch("SELECT credential FROM kfs_credentials ORDER BY access_key")
        return [decode(Credential, row["credential"]) for row in rows]

    async def save_credential(self, credential: Credential) -> None:
        """Store a credential, durably."""
        await self._execute(
            "INSERT INTO kfs_credentials VALUES ($1, $2) "
            "ON CONFLICT (access_key) DO UPDATE SET credential = EXCLUDED.credential",
            credential.access_key,
            encode(credential),
        )

    async def delete_credential(self, access_key: str) -> bool:
        """Revoke a credential; return whether it existed."""
        status = await self._execute(
            "DELETE FROM kfs_credentials WHERE access_key = $1", access_key
        )
        return status != "DELETE 0"

    async def cluster_id(self, new_id: str) -> str:
        """Return the id of this master's cluster, storing ``new_id`` the first time."""
        return await self._setting("cluster", new_id)

    async def key_check(self, new_check: str) -> str:
        """Return the check value of the master key, storing ``new_check`` the first time."""
        return await self._setting("key_check", new_check)

    async def setting(self, name: str) -> str | None:
        """Return the setting ``name``, or None."""
        found: str | None = await self._fetchval(
            "SELECT value FROM kfs_settings WHERE name = $1", name
        )
        return found

    async def put_setting(self, name: str, value: str | None) -> None:
        """Store the setting ``name`` (None: drop it), durably."""
        if value is None:
            await self._execute("DELETE FROM kfs_settings WHERE name = $1", name)
        else:
            await self._execute(
                "INSERT INTO kfs_settings VALUES ($1, $2) "
                "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                name,
                value,
            )

    async def _setting(self, name: str, first: str) -> str:
        found: str = await self._fetchval(
            "WITH stored AS (INSERT INTO kfs_settings VALUES ($1, $2) "
            "ON CONFLICT (name) DO NOTHING RETURNING value) "
            "SELECT value FROM stored UNION ALL SELECT value FROM kfs_settings WHERE name = $1",
            name,
            first,
        )
        return found

    # Masters sharing the index.

    async def beat(self, url: str) -> None:
        """Record that this master is alive, and reachable at ``url`` (the engine's clock)."""
        await self._execute(
            "INSERT INTO kfs_masters VALUES ($1, $2, now()) "
            "ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, seen = EXCLUDED.seen",
            self.owner,
            url,
        )

    async def masters(self, within: float) -> list[tuple[str, str]]:
        """Return (id, URL) of every master heard from within ``within`` seconds, by id."""
        rows = await self._fetch(
            "SELECT id, url FROM kfs_masters "
            "WHERE seen > now() - make_interval(secs => $1) ORDER BY id",
            within,
        )
        return [(row["id"], row["url"]) for row in rows]

    async def lease(self, name: str, seconds: float) -> str:
        """Take or keep the lease ``name`` for this master for ``seconds`` (the engine's
        clock), unless another holds it unexpired; return its holder now.  The row is
        always updated (to itself, when another holds it), so the holder returned is the
        one the row lock saw, not an older snapshot's."""
        holder: str = await self._fetchval(
            """
            INSERT INTO kfs_leases VALUES ($1, $2, now() + make_interval(secs => $3))
            ON CONFLICT (name) DO UPDATE SET
                holder = CASE WHEN kfs_leases.holder = EXCLUDED.holder
                    OR kfs_leases.expires < now() THEN EXCLUDED.holder ELSE kfs_leases.holder END,
                expires = CASE WHEN kfs_leases.holder = EXCLUDED.holder
                    OR kfs_leases.expires < now() THEN EXCLUDED.expires ELSE kfs_leases.expires END
            RETURNING holder
            """,
            name,
            self.owner,
            seconds,
        )
        return holder

    # Copying between engines.

    async def export(self) -> AsyncGenerator[Entry, None]:
        """Yield every entry, ordered by kind then name, from one snapshot (a cursor in a
        repeatable-read transaction), a page at a time."""
        with _reaching(self.url):
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                async for row in conn.cursor(_EXPORT, prefetch=PAGE):
                    yield Entry(Kind(row["kind"]), row["name"], row["value"])

    async def import_entries(self, entries: list[Entry]) -> None:
        """Write ``entries`` in one transaction."""
        async with self._transaction() as conn:
            for kind in Kind:
                rows = [(e.name, e.value) for e in entries if e.kind is kind]
                if rows:
                    await conn.executemany(_IMPORT[kind], [_import_row(kind, *r) for r in rows])

    async def masters_attached(self) -> int:
        """Return how many other connections of kittenFS masters the database has now
        (``pg_stat_activity``, by their application name)."""
        found: int = await self._fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = $1 AND pid <> pg_backend_pid()",
            APPLICATION,
        )
        return found

    async def close(self) -> None:
        """Close the connections once the statements under way have finished."""
        try:
            await asyncio.wait_for(self._pool.close(), STATEMENT_TIMEOUT)
        except TimeoutError:
            self._pool.terminate()


async def _save_worker(conn: Any, info: WorkerInfo) -> None:
    """Save a worker's registration unless its index is another worker's (Raced), and raise
    the next index to give past it."""
    saved = await conn.fetchval(
        "WITH saved AS (INSERT INTO kfs_workers VALUES ($1, $2, $3) "
        "ON CONFLICT (idx) DO UPDATE SET info = EXCLUDED.info WHERE kfs_workers.id = EXCLUDED.id "
        "RETURNING 1) SELECT count(*) FROM saved",
        info.index,
        info.id,
        encode(info),
    )
    if not saved:
        raise Raced(f"worker index {info.index} belongs to another worker")
    await conn.execute(
        "INSERT INTO kfs_settings VALUES ('next_worker', $1) ON CONFLICT (name) DO UPDATE "
        "SET value = GREATEST(kfs_settings.value::integer, EXCLUDED.value::integer)::text",
        str(info.index + 1),
    )


#: Every entry of the index with its name as in a LevelDB key (base.Entry), in export order.
_EXPORT = """
SELECT kind, name, value FROM (
    SELECT 'a' AS kind, access_key AS name, credential AS value FROM kfs_credentials
    UNION ALL SELECT 'c', name, convert_to(value, 'UTF8') FROM kfs_settings WHERE name <> 'schema'
    UNION ALL SELECT 'd', CASE WHEN worker = -1 THEN blob ELSE blob || '@' || worker END, record
        FROM kfs_garbage
    UNION ALL SELECT space, key, record FROM kfs_records
    UNION ALL SELECT 'p', CASE WHEN move THEN blob || '@move' ELSE blob END, record
        FROM kfs_pending
    UNION ALL SELECT 'w', lpad(idx::text, 8, '0'), info FROM kfs_workers
    UNION ALL SELECT 'x', lpad(idx::text, 8, '0'), convert_to('draining', 'UTF8')
        FROM kfs_draining
) AS entries ORDER BY kind COLLATE "C", name COLLATE "C"
"""

#: How an entry of each kind is written (its parameters: ``_import_row``).
_IMPORT = {
    Kind.CREDENTIAL: "INSERT INTO kfs_credentials VALUES ($1, $2)",
    Kind.SETTING: "INSERT INTO kfs_settings VALUES ($1, $2) "
    "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
    Kind.GARBAGE: "INSERT INTO kfs_garbage VALUES ($1, $2, $3)",
    Kind.LIVE: "INSERT INTO kfs_records VALUES ($1, 'k', $2, $3, $4)",
    Kind.PENDING: "INSERT INTO kfs_pending VALUES ($1, $2, '', $3)",
    Kind.UNLINKED: "INSERT INTO kfs_records VALUES ($1, 'u', $2, $3, $4)",
    Kind.WORKER: "INSERT INTO kfs_workers VALUES ($1, $2, $3)",
    Kind.DRAINING: "INSERT INTO kfs_draining VALUES ($1)",
}


def _import_row(kind: Kind, name: str, value: bytes) -> tuple[Any, ...]:
    """Return the parameters of ``_IMPORT[kind]`` for one entry."""
    if kind is Kind.SETTING:
        return name, value.decode("utf-8")
    if kind is Kind.GARBAGE:
        blob, at, worker = name.partition("@")
        return blob, int(worker) if at else WHOLE, value
    if kind is Kind.PENDING:
        blob, _, move = name.partition("@")
        return blob, move == "move", value
    if kind in (Kind.LIVE, Kind.UNLINKED):
        record = decode(IndexRecord, value)
        return name, record.version, list(record.replicas), value
    if kind is Kind.WORKER:
        return int(name), decode(WorkerInfo, value).id, value
    if kind is Kind.DRAINING:
        return (int(name),)
    return name, value


async def _keep_session(conn: Any) -> None:
    """What a connection needs when it goes back to the pool: nothing but the end of a
    transaction cut off.  (asyncpg's default resets the whole session, one more round trip
    per statement: 12% of a master's CPU on small PUTs.  The index keeps no session state:
    no LISTEN, no session advisory locks, no temporary tables.)"""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _replica_garbage(
    record: IndexRecord, workers: tuple[int, ...], stamp_ms: int
) -> list[tuple[str, int, IndexRecord]]:
    """Return one garbage entry per worker for ``record``'s version."""
    blob = _blob(record)
    return [
        (blob, index, dataclasses.replace(record, replicas=(index,), modified_ms=stamp_ms))
        for index in workers
    ]


async def _put_garbage(conn: Any, entries: list[tuple[str, int, IndexRecord]]) -> None:
    await conn.execute(
        "INSERT INTO kfs_garbage SELECT * FROM unnest($1::text[], $2::integer[], $3::bytea[]) "
        "ON CONFLICT (blob, worker) DO UPDATE SET record = EXCLUDED.record",
        [blob for blob, _, _ in entries],
        [worker for _, worker, _ in entries],
        [encode(record) for _, _, record in entries],
    )
