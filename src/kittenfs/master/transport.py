"""The replica transport: every call the master makes to a worker about blobs.

Callers name workers by index; the transport finds them.  ``replica_io.HttpTransport`` is the
implementation (aiohttp, the worker API of docs/api.md); tests use an in-memory fake
(tests/unit/fakes.py).  Every method raises ReplicaError (errors.py) when the worker fails or
cannot be reached, with ``unreachable`` set for the latter.
"""

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from ..placement import blob_id
from ..records import BlobListing, CopyState, IndexRecord, Meta


class ReplicaTransport(Protocol):
    """The master's operations on the blobs of its workers."""

    async def upload(
        self,
        worker: int,
        blob: str,
        key: str,
        version: str,
        body: AsyncIterator[bytes],
        size: int | None,
        meta_follows: bool = False,
    ) -> tuple[int, str]:
        """Stream ``body`` to a worker as a blob; return the (size, MD5) it made durable.

        ``meta_follows``: ``body`` ends with the value's metadata frame (records.meta_frame)
        after its ``size`` bytes of value; the worker keeps the metadata with the blob.
        """
        ...

    async def put_small(
        self, worker: int, blob: str, key: str, version: str, value: bytes, meta: Meta = ()
    ) -> tuple[int, str]:
        """Store a small value whole, with its metadata (batched with others); return its
        durable (size, MD5)."""
        ...

    def read(
        self, worker: int, blob: str, first: int = 0, last: int | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Open a worker's blob (bytes ``first`` .. ``last``; ``last`` None: the whole blob,
        ``first`` 0) and give its bytes as they come.

        Opening raises ReplicaError with the worker's ``status`` if it does not serve the
        bytes (404: it lacks the blob; 500: its copy is corrupt); reading the bytes raises
        ReplicaError if the worker stops part way (it cuts a stream at a block that fails
        its check)."""
        ...

    async def delete(self, worker: int, blob: str) -> None:
        """Delete a blob; succeed if it is gone (or was never there)."""
        ...

    async def copy_state(self, worker: int, blob: str, md5: str, deep: bool) -> CopyState:
        """Return the state of a worker's copy of a blob with this MD5 (``deep``: every byte
        read and checked; otherwise its metadata)."""
        ...

    def list_blobs(self, worker: int, page: int = 1000) -> AsyncIterator[BlobListing]:
        """Yield every blob a worker holds, in id order."""
        ...

    async def copy(self, record: IndexRecord, source: int, dest: int) -> tuple[int, str]:
        """Stream ``record``'s blob from worker ``source`` to ``dest``, with the record's
        metadata; return what ``dest`` made durable."""
        ...

    async def close(self) -> None:
        """Stop the operations under way (they fail)."""
        ...


async def check_copy(
    transport: ReplicaTransport, worker: int, record: IndexRecord, deep: bool
) -> CopyState:
    """Return the state of ``worker``'s copy of ``record``'s version."""
    return await transport.copy_state(worker, blob_id(record.key, record.version), record.md5, deep)
