"""The index's key spaces as one ordered key-value store holds them (LevelDB, etcd under a
prefix), and as ``kittenfs index copy`` names entries (base.Entry): docs/format.md.

Each space is ordered by the bytes after its prefix:

- ``k:<key>``   live value        -> IndexRecord
- ``u:<key>``   unlinked value    -> IndexRecord (hidden from GET and listing, bytes kept)
- ``p:<blob>``  write in progress -> IndexRecord (replicas may hold a partial or durable copy)
- ``p:<blob>@move``  a move's copies in progress -> IndexRecord naming the receiving workers
- ``d:<blob>``  garbage           -> IndexRecord (replicas still to be told to delete it)
- ``d:<blob>@<worker>``  garbage of one replica, left by a move (rebalance, repair)
- ``w:<index>`` registered worker -> WorkerInfo (the index zero-padded to 8 digits)
- ``x:<index>`` worker being drained -> b"draining" (new replicas avoid it)
- ``a:<access key>``  a credential -> Credential (no secret: it derives from master.key)
- ``c:id``      this master's id (no longer written: master.id in the data directory)
- ``c:cluster`` the id of this master's cluster (workers bind to it)
- ``c:next_worker``  the next worker index to give: indices are never reused
- ``c:key_check``  a check value of the master key (access.key_check), never the key

A garbage entry's id (base.EntryId) is its key in this layout.
"""

import dataclasses

from ...keys import encode_key
from ...placement import blob_id
from ...records import IndexRecord, encode
from .base import Space

#: The suffix of a move's pending key: ``p:<blob>@move``.
MOVE = b"@move"
#: The settings' space.
SETTING = b"c:"
#: The next worker index to give.
NEXT_WORKER = b"c:next_worker"


def key_of(space: Space, key: str) -> bytes:
    """Return where ``key``'s record lies in a key-named space (LIVE or UNLINKED)."""
    return space.value + encode_key(key)


def blob_key(space: Space, record: IndexRecord) -> bytes:
    """Return where ``record``'s version lies in a blob-named space (PENDING or GARBAGE)."""
    return space.value + blob_id(record.key, record.version).encode("ascii")


def move_key(record: IndexRecord) -> bytes:
    """Return where a move of ``record``'s version is recorded while in flight."""
    return blob_key(Space.PENDING, record) + MOVE


def worker_key(index: int) -> bytes:
    """Return where worker ``index``'s registration lies."""
    return b"w:%08d" % index


def draining_key(index: int) -> bytes:
    """Return where the mark that worker ``index`` is being drained lies."""
    return b"x:%08d" % index


def credential_key(access_key: str) -> bytes:
    """Return where the credential ``access_key`` lies."""
    return b"a:" + access_key.encode("ascii", "replace")


def replica_garbage(
    record: IndexRecord, workers: tuple[int, ...], stamp_ms: int
) -> dict[bytes, bytes]:
    """Return one garbage entry per worker for ``record``'s version (``stamp_ms`` starts the
    reaper's grace; a size of -1 needs none)."""
    return {
        blob_key(Space.GARBAGE, record) + b"@%d" % index: encode(
            dataclasses.replace(record, replicas=(index,), modified_ms=stamp_ms)
        )
        for index in workers
    }
