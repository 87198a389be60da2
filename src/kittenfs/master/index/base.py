"""The master's index as an interface: what the rest of the master may ask of it.

``Index`` is a Protocol; ``leveldb.LevelDBIndex`` (embedded) and ``postgres.PostgresIndex``
(shared by any number of masters) implement it, and one contract suite (tests/index) holds
them to it.  Every
read and every commit is a coroutine, so a backend whose reads go over the network
(PostgreSQL, etcd) can be added without touching a caller.  Callers must therefore assume
that any index call may suspend: a decision made on what one read returned holds only under
the key's lock (write_path.Store, the mover, the reaper) or with another guard (the hot-value
cache's generations, cache.py).

The key spaces and their meaning are in docs/format.md and leveldb.py.  Every change is one
atomic, durable commit: a crash leaves each key either as it was or as it became.

Every commit that changes a key's record is conditional, so that writes to one key are
serialized by the engine even when several masters share it (PostgreSQL): it lands only if
the key's record is still the one the caller read (its version and replicas, and its space
where that matters: see each method), and a write's or a
move's commit only if its pending record is still there (a master taken for dead had its
writes in flight turned into garbage).  Otherwise it raises ``Raced`` and changes nothing;
the caller reads again and decides anew.  Under one master, whose key locks already
serialize a key's changes, it never raises.
"""

from collections.abc import AsyncGenerator, AsyncIterator
from enum import Enum, StrEnum
from typing import NamedTuple, Protocol

from ...credentials import Credential
from ...records import IndexRecord, WorkerInfo


class Raced(Exception):
    """A conditional commit found the key changed since the caller read it, and wrote
    nothing: read again and decide anew."""


class NoLongerPending(Raced):
    """A write's or a move's commit found its pending record gone (its master was taken for
    dead, and its writes in flight became garbage): the write must fail."""


class Space(bytes, Enum):
    """The key spaces of the index."""

    LIVE = b"k:"
    UNLINKED = b"u:"
    PENDING = b"p:"
    GARBAGE = b"d:"


#: The spaces whose records name a key's current bytes; a key is in at most one of them.
HELD = (Space.LIVE, Space.UNLINKED)

#: A garbage entry's own id (opaque to callers): a version's, or one replica's of it.
EntryId = bytes


class Kind(StrEnum):
    """What one exported entry of an index is (``Entry``), in export order: each kind is
    named by its LevelDB key space's letter (format.md)."""

    CREDENTIAL = "a"
    SETTING = "c"
    GARBAGE = "d"
    LIVE = "k"
    PENDING = "p"
    UNLINKED = "u"
    WORKER = "w"
    DRAINING = "x"


class Entry(NamedTuple):
    """One piece of an index's state in the form every engine shares, for ``kittenfs index
    copy``: ``name`` is what follows the kind's prefix in a LevelDB key (a key, a blob id,
    ``<blob>@move``, ``<blob>@<worker>``, a zero-padded worker index, a setting's name) and
    ``value`` the stored bytes (a record as records.encode gives it)."""

    kind: Kind
    name: str
    value: bytes


def expect(
    key: str,
    found: tuple[Space, IndexRecord] | None,
    expected: IndexRecord | None,
    space: Space | None = None,
) -> None:
    """Raise Raced unless ``found`` (the key's record with its space, as just read) has
    ``expected``'s version and replicas (None: the key has no record) and, given, is in
    ``space``: the check of every conditional key change in a key-value engine."""
    if expected is None:
        matches = found is None
    else:
        matches = (
            found is not None
            and (found[1].version, found[1].replicas) == (expected.version, expected.replicas)
            and space in (None, found[0])
        )
    if not matches:
        raise Raced(
            f"{key!r} holds {found and found[1].version}, not {expected and expected.version}"
        )


async def held_records(index: "Index") -> AsyncIterator[tuple[Space, IndexRecord]]:
    """Yield every live, then every unlinked, record of ``index`` with its space, as its
    ``records`` pages them: ``all_current`` for an engine whose reads are paged already."""
    for space in HELD:
        async for record in index.records(space):
            yield space, record


class Index(Protocol):
    """Durable state of the master: keys, writes in flight, garbage, workers, credentials."""

    #: True if other masters may use the index at the same time (PostgreSQL): what they
    #: save there must then be read again (membership.refresh), and cached values checked.
    shared: bool

    # Keys and their records.

    async def get(self, space: Space, key: str) -> IndexRecord | None:
        """Return the record of ``key`` in a key-named space (LIVE or UNLINKED), or None."""
        ...

    async def current(self, key: str) -> tuple[Space, IndexRecord] | None:
        """Return the key's live or unlinked record, with its space, or None."""
        ...

    def all_current(self) -> AsyncIterator[tuple[Space, IndexRecord]]:
        """Yield every live, then every unlinked, record with its space, letting the event
        loop run between pages."""
        ...

    def records(
        self, space: Space, prefix: str = "", start: str = ""
    ) -> AsyncIterator[IndexRecord]:
        """Yield the records of a space in key order, from ``start`` on, under ``prefix``."""
        ...

    async def keys(
        self, space: Space, prefix: str, start: str, limit: int
    ) -> tuple[list[str], str]:
        """Return up to ``limit`` keys of a space under ``prefix`` from ``start`` on, and the
        first key of the next page ("" on the last page)."""
        ...

    # The write path, moves and garbage.

    async def begin_write(self, pending: IndexRecord) -> None:
        """Record a write as in flight before any replica receives a byte."""
        ...

    async def commit_write(self, record: IndexRecord, replaced: list[IndexRecord]) -> None:
        """Make ``record`` the key's live value; the versions it replaces become garbage.

        ``replaced`` is the key's live or unlinked record as the caller read it (empty if it
        had none); Raced if the key's record is another version now, or the write's pending
        record is gone."""
        ...

    async def abandon_write(self, pending: IndexRecord) -> None:
        """Turn a failed write's pending record into garbage, for replicas not yet cleaned."""
        ...

    async def begin_move(self, move: IndexRecord) -> None:
        """Record a move's copies (``move.replicas``) as in flight before any is made; Raced
        if a move of this version is in flight already."""
        ...

    async def move_in_flight(self, record: IndexRecord) -> tuple[int, ...]:
        """Return the workers that a move in flight is copying ``record``'s version to
        (empty if none): the reaper must not delete those copies under it."""
        ...

    async def commit_move(
        self, space: Space, record: IndexRecord, moved: IndexRecord, dropped: tuple[int, ...]
    ) -> None:
        """Switch a key's record to ``moved`` (the same version on other replicas); each
        dropped replica gets its own garbage entry.  Raced if the key's record is no longer
        ``record`` (in ``space``), or the move's pending record is gone."""
        ...

    async def abandon_move(self, move: IndexRecord) -> list[tuple[EntryId, IndexRecord]]:
        """Turn a failed move's copies into one garbage entry each; return the entries."""
        ...

    async def update(self, space: Space, record: IndexRecord, updated: IndexRecord) -> None:
        """Replace a key's record ``record`` in ``space`` with ``updated`` (the same version
        on other replicas); Raced if the key's record is not ``record`` in ``space`` now."""
        ...

    async def unlink(self, record: IndexRecord) -> None:
        """Hide a live value from reads and listing, keeping its bytes; Raced if the key's
        live record is not ``record`` now."""
        ...

    async def remove(self, record: IndexRecord) -> None:
        """Remove a live or unlinked value from the index; its replicas become garbage.
        Raced if the key's record is not ``record`` now."""
        ...

    async def owned(self, blob: str) -> bool:
        """Return True if a pending record or a garbage entry exists for ``blob``."""
        ...

    async def garbage(self) -> list[tuple[EntryId, IndexRecord]]:
        """Return every garbage entry as (its id, its record)."""
        ...

    async def garbage_entry(self, entry: EntryId) -> IndexRecord | None:
        """Return the garbage entry stored under ``entry`` now, or None."""
        ...

    async def forget(self, entry: EntryId) -> None:
        """Drop one garbage entry, by its id, once its replicas have been cleaned."""
        ...

    async def forget_garbage(self, record: IndexRecord) -> None:
        """Drop a version's garbage record whose replicas have all been cleaned."""
        ...

    async def pending_to_garbage(self, dead_after: float, at_start: bool = True) -> int:
        """Turn into garbage every write and move in flight of masters not heard from
        (``beat``) for ``dead_after`` seconds and, ``at_start``, of this master (left by a
        crash); return how many there were.  Their commits, should such a master come back,
        raise NoLongerPending."""
        ...

    async def load(
        self, records: list[IndexRecord], workers: list[WorkerInfo], cluster: str | None
    ) -> None:
        """Write a rebuilt index's live records, workers and cluster id."""
        ...

    # Workers.

    async def workers(self) -> list[WorkerInfo]:
        """Return every registered worker, by index."""
        ...

    async def save_worker(self, info: WorkerInfo) -> None:
        """Persist a worker's registration, and that its index is never to be given again;
        Raced if the index is another worker's (registered meanwhile by another master)."""
        ...

    async def next_worker(self) -> int:
        """Return the lowest index never given to a worker (removed ones included)."""
        ...

    async def draining(self) -> set[int]:
        """Return the indices of the workers being drained."""
        ...

    async def set_draining(self, index: int, draining: bool) -> None:
        """Mark a worker as being drained (or not), durably."""
        ...

    async def remove_worker(self, index: int) -> None:
        """Forget a worker: its registration and its drain mark."""
        ...

    # Credentials and identity.

    async def credential(self, access_key: str) -> Credential | None:
        """Return the credential with this access key, or None."""
        ...

    async def credentials(self) -> list[Credential]:
        """Return every credential, by access key."""
        ...

    async def save_credential(self, credential: Credential) -> None:
        """Store a credential, durably."""
        ...

    async def delete_credential(self, access_key: str) -> bool:
        """Revoke a credential; return whether it existed."""
        ...

    async def cluster_id(self, new_id: str) -> str:
        """Return the id of this master's cluster, storing ``new_id`` the first time."""
        ...

    async def key_check(self, new_check: str) -> str:
        """Return the check value of the master key this index's credentials derive from,
        storing ``new_check`` the first time (the key itself is never stored here)."""
        ...

    async def setting(self, name: str) -> str | None:
        """Return the setting ``name`` (format.md's ``c:<name>``), or None."""
        ...

    async def put_setting(self, name: str, value: str | None) -> None:
        """Store the setting ``name`` (None: drop it), durably."""
        ...

    # Masters sharing the index.

    async def beat(self, url: str) -> None:
        """Record that this master is alive, and reachable at ``url``."""
        ...

    async def masters(self, within: float) -> list[tuple[str, str]]:
        """Return (id, URL) of every master heard from within ``within`` seconds, by id."""
        ...

    async def lease(self, name: str, seconds: float) -> str:
        """Take the lease ``name`` for this master, or keep it, for ``seconds`` from now by
        the engine's clock, unless another master holds it and it has not run out; return
        the id of the master that holds it now."""
        ...

    # Copying between engines.

    async def masters_attached(self) -> int:
        """Return how many master processes other than the caller use the index right now
        (``kittenfs index copy`` refuses one in use)."""
        ...

    def export(self) -> AsyncGenerator[Entry, None]:
        """Yield every entry of the index, from one consistent snapshot, ordered by kind
        (``Kind``'s order) then by the UTF-8 bytes of the name."""
        ...

    async def import_entries(self, entries: list[Entry]) -> None:
        """Write ``entries`` (as ``export`` gives them) in one commit."""
        ...

    async def close(self) -> None:
        """Close the index after queued writes."""
        ...
