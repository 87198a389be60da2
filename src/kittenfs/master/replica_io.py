"""Replica I/O: how the master talks to workers about blobs, over HTTP (aiohttp).

``HttpTransport`` is the master's ReplicaTransport (transport.py) built of the functions here.

One pooled aiohttp session per master process, with keep-alive connections to every worker.
Large values are streamed one request per replica (``upload``); small puts and all deletes
go through a Batcher, which packs the operations bound for one worker into shared batches,
sent on the worker's batch stream (batch_stream.py).
The worker's blob API is documented in docs/api.md ("Worker API"); ``list_blobs`` also
serves a worker that clones another.
"""

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from .. import batch
from ..clusterauth import session_middlewares
from ..errors import ReplicaError
from ..placement import blob_id
from ..records import BlobListing, CopyState, IndexRecord, Meta, RecordError, meta_frame
from ..signing import ClusterKey
from .batch_stream import BatchStreams

#: Chunk size when a value is copied from one worker to another.
COPY_CHUNK = 256 * 1024
#: Seconds to wait for a worker to accept a connection.
CONNECT_TIMEOUT = 5.0
#: Bytes read from a worker's answer at a time (a stream through the master).
READ_CHUNK = 64 * 1024
#: Bytes of a worker's answer buffered before reading from it pauses (aiohttp buffers up to
#: twice this): what a stream through the master holds of each replica.
READ_BUFFER = 64 * 1024


@contextmanager
def _talking_to(worker_url: str) -> Iterator[None]:
    """Turn any transport failure while talking to a worker into a ReplicaError."""
    try:
        yield
    except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
        raise ReplicaError(f"{worker_url}: {type(exc).__name__}: {exc}", unreachable=True) from None
    except aiohttp.ClientError as exc:
        raise ReplicaError(f"{worker_url}: {type(exc).__name__}: {exc}") from None


def new_session(
    read_timeout: float, key: ClusterKey | None, tls: ssl.SSLContext | None = None
) -> aiohttp.ClientSession:
    """Return the master's pooled session to the workers, signing every request with the
    cluster secret's ``key`` and checking HTTPS workers' certificates with ``tls``.

    ``read_timeout`` bounds each wait for a worker's answer (not the whole transfer).
    """
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=read_timeout)
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ssl=tls or True)
    return aiohttp.ClientSession(
        timeout=timeout,
        connector=connector,
        auto_decompress=False,
        read_bufsize=READ_BUFFER,
        middlewares=session_middlewares(key),
    )


async def list_blobs(
    session: aiohttp.ClientSession, worker_url: str, page: int = 1000
) -> AsyncIterator[BlobListing]:
    """Yield every blob a worker lists (``GET /blobs``), following its pages."""
    start = ""
    while True:
        async with session.get(
            f"{worker_url}/blobs", params={"start": start, "limit": page}
        ) as resp:
            resp.raise_for_status()
            body = await resp.json()
        for blob in body["blobs"]:
            yield BlobListing.from_json(blob)
        start = body["next"]
        if not start:
            return


async def copy_state(
    session: aiohttp.ClientSession, worker_url: str, blob: str, md5: str, deep: bool
) -> CopyState:
    """Return the state of a worker's copy of a blob with this MD5.

    Shallow: a HEAD (the worker checks the header and size, and the MD5 of inline values).
    ``deep``: ``GET /check/<id>``, for which the worker reads every byte.  Raise ReplicaError
    if the worker cannot be asked.
    """
    url = f"{worker_url}/check/{blob}" if deep else blob_url(worker_url, blob)
    with _talking_to(worker_url):
        async with session.request("GET" if deep else "HEAD", url) as resp:
            if resp.status == 404:
                return CopyState.MISSING
            if resp.status == 500:
                return CopyState.CORRUPT
            if resp.status != 200:
                raise ReplicaError(f"{worker_url} answered {resp.status} for {blob}")
            if deep:
                answer: dict[str, Any] = await resp.json()
                intact = answer.get("ok") and answer.get("md5") == md5
            else:
                intact = resp.headers.get("Content-Md5") == md5
            return CopyState.GOOD if intact else CopyState.CORRUPT


def blob_url(worker_url: str, blob: str) -> str:
    """Return the URL at which a worker serves a blob."""
    return f"{worker_url}/blob/{blob}"


async def upload(
    session: aiohttp.ClientSession,
    worker_url: str,
    blob: str,
    key: str,
    version: str,
    body: AsyncIterator[bytes],
    size: int | None,
    meta_follows: bool = False,
) -> tuple[int, str]:
    """Stream ``body`` to a worker as a blob; return the (size, MD5) it made durable.

    ``meta_follows``: ``body`` ends with a metadata frame, whose length is not known before
    it is sent, so the value's ``size`` goes in X-Kfs-Size and the body is chunked.
    """
    headers = {
        "X-Kfs-Key": quote(key, safe=""),
        "X-Kfs-Version": version,
        "Content-Type": "application/octet-stream",
    }
    if meta_follows:
        headers["X-Kfs-Meta"] = "trailer"
    if size is not None:
        headers["X-Kfs-Size" if meta_follows else "Content-Length"] = str(size)
    with _talking_to(worker_url):
        async with session.put(blob_url(worker_url, blob), data=body, headers=headers) as resp:
            if resp.status != 201:
                raise ReplicaError(f"{worker_url} answered {resp.status}: {await resp.text()}")
            result = await resp.json()
            return int(result["size"]), str(result["md5"])


#: Batch requests on the wire to one worker at a time; operations queue behind them.
BATCHES_IN_FLIGHT = 1


@dataclass
class _Lane:
    """The operations waiting for one worker, and how many batch requests carry others."""

    queue: deque[tuple[batch.Op, "asyncio.Future[dict[str, Any]]"]] = field(default_factory=deque)
    sending: int = 0


class Batcher:
    """Sends small puts and deletes to workers, many to one ``POST /batch``.

    An operation is sent at once when fewer than BATCHES_IN_FLIGHT batches are on the wire to
    its worker; otherwise it waits for one of them to come back and leaves with everything
    that queued meanwhile.  So batches grow with the load and a lone operation never waits:
    the network's group commit, matching the worker's fsync group commit behind it.
    """

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        # A batch's answer may take as long as the session waits for any worker's answer.
        self.streams = BatchStreams(session, session.timeout.sock_read or 30.0)
        self._lanes: dict[str, _Lane] = {}
        self._senders: set[asyncio.Task[None]] = set()

    async def put(
        self, worker_url: str, blob: str, key: str, version: str, value: bytes, meta: Meta = ()
    ) -> tuple[int, str]:
        """Store ``value`` as a blob on a worker, with its metadata ``meta``; return the
        (size, MD5) it made durable."""
        result = await self._submit(worker_url, batch.PutOp(blob, key, version, value, meta))
        if result.get("status") != 201:
            raise _refused(worker_url, result)
        try:
            return int(result["size"]), str(result["md5"])
        except (KeyError, TypeError, ValueError):
            raise ReplicaError(
                f"{worker_url}: a stored put answered without its size and MD5"
            ) from None

    async def delete(self, worker_url: str, blob: str) -> None:
        """Delete a blob on a worker; succeed if it is gone (or was never there)."""
        result = await self._submit(worker_url, batch.DeleteOp(blob))
        if result.get("status") not in (204, 404):
            raise _refused(worker_url, result)

    async def _submit(self, worker_url: str, op: batch.Op) -> dict[str, Any]:
        lane = self._lanes.setdefault(worker_url, _Lane())
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        lane.queue.append((op, done))
        if lane.sending < BATCHES_IN_FLIGHT:
            lane.sending += 1
            sender = asyncio.create_task(self._drain(worker_url, lane))
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await done

    async def _drain(self, worker_url: str, lane: _Lane) -> None:
        """Send the lane's queue, a batch at a time, until it is empty."""
        try:
            while lane.queue:
                taken = _take(lane.queue)
                if not taken:
                    continue
                try:
                    results = await self._send(worker_url, [op for op, _ in taken])
                except BaseException as exc:
                    failure = (
                        exc
                        if isinstance(exc, ReplicaError)
                        else ReplicaError(
                            f"{worker_url}: batch failed: {type(exc).__name__}: {exc}"
                        )
                    )
                    for _, done in taken:
                        if not done.done():
                            done.set_exception(failure)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, done), result in zip(taken, results, strict=False):
                    if not done.done():
                        done.set_result(result)
        finally:
            lane.sending -= 1

    async def _send(self, worker_url: str, ops: list[batch.Op]) -> list[dict[str, Any]]:
        """Send one batch, on the worker's batch stream if it serves one (else as a
        ``POST /batch``); return its results, one per operation."""
        body = batch.encode(ops)
        stream = await self.streams.get(worker_url)
        answer = (
            await stream.send(body) if stream is not None else await self._post(worker_url, body)
        )
        if isinstance(answer, dict) and "error" in answer:
            raise ReplicaError(f"{worker_url} refused a batch: {answer.get('message', '')}")
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(ops):
            raise ReplicaError(f"{worker_url}: a batch answer without one result per operation")
        return [result if isinstance(result, dict) else {} for result in results]

    async def _post(self, worker_url: str, body: bytes) -> Any:
        with _talking_to(worker_url):
            async with self.session.post(
                f"{worker_url}/batch",
                data=body,
                headers={"Content-Type": "application/octet-stream"},
            ) as resp:
                if resp.status != 200:
                    raise ReplicaError(f"{worker_url} answered {resp.status}: {await resp.text()}")
                return await resp.json()

    async def close(self) -> None:
        """Stop the batches under way (their operations fail), and close the streams."""
        for sender in list(self._senders):
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        await self.streams.close()


def _take(
    queue: deque[tuple[batch.Op, "asyncio.Future[dict[str, Any]]"]],
) -> list[tuple[batch.Op, "asyncio.Future[dict[str, Any]]"]]:
    """Pop the next batch off ``queue``, leaving out operations whose caller has gone."""
    taken: list[tuple[batch.Op, asyncio.Future[dict[str, Any]]]] = []
    value_bytes = 0
    while queue and len(taken) < batch.MAX_OPS:
        op, done = queue[0]
        size = len(op.value) if isinstance(op, batch.PutOp) else 0
        if taken and value_bytes + size > batch.MAX_VALUE_BYTES:
            break
        queue.popleft()
        if not done.done():
            taken.append((op, done))
            value_bytes += size
    return taken


async def _chunks(worker_url: str, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Yield a worker's answer in chunks; a failure part way is a ReplicaError."""
    with _talking_to(worker_url):
        async for chunk in resp.content.iter_chunked(READ_CHUNK):
            yield chunk


async def _followed_by(chunks: AsyncIterator[bytes], last: bytes) -> AsyncIterator[bytes]:
    """Yield ``chunks``, then ``last``."""
    async for chunk in chunks:
        yield chunk
    yield last


def _refused(worker_url: str, result: dict[str, Any]) -> ReplicaError:
    return ReplicaError(
        f"{worker_url} answered {result.get('status')}: "
        f"{result.get('error', '')}: {result.get('message', '')}"
    )


class HttpTransport:
    """The replica transport over HTTP: one pooled session, small puts and deletes batched."""

    def __init__(self, session: aiohttp.ClientSession, url_of: Callable[[int], str]) -> None:
        self.session = session
        self.url_of = url_of
        self.batcher = Batcher(session)

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
        """Stream ``body`` to a worker as a blob; return the (size, MD5) it made durable."""
        return await upload(
            self.session, self.url_of(worker), blob, key, version, body, size, meta_follows
        )

    async def put_small(
        self, worker: int, blob: str, key: str, version: str, value: bytes, meta: Meta = ()
    ) -> tuple[int, str]:
        """Store a small value through the batcher; return the (size, MD5) made durable."""
        return await self.batcher.put(self.url_of(worker), blob, key, version, value, meta)

    @contextlib.asynccontextmanager
    async def read(
        self, worker: int, blob: str, first: int = 0, last: int | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open a worker's blob (``GET /blob/<id>``, with a Range unless ``last`` is None)
        and give its bytes in chunks of READ_CHUNK."""
        worker_url = self.url_of(worker)
        headers = {} if last is None else {"Range": f"bytes={first}-{last}"}
        async with contextlib.AsyncExitStack() as stack:
            with _talking_to(worker_url):
                resp = await stack.enter_async_context(
                    self.session.get(blob_url(worker_url, blob), headers=headers)
                )
            if resp.status != (200 if last is None else 206):
                raise ReplicaError(f"worker {worker}: {resp.status}", status=resp.status)
            yield _chunks(worker_url, resp)

    async def delete(self, worker: int, blob: str) -> None:
        """Delete a blob through the batcher; succeed if it is gone."""
        await self.batcher.delete(self.url_of(worker), blob)

    async def copy_state(self, worker: int, blob: str, md5: str, deep: bool) -> CopyState:
        """Return the state of a worker's copy of a blob (a HEAD, or ``deep`` a check)."""
        return await copy_state(self.session, self.url_of(worker), blob, md5, deep)

    def list_blobs(self, worker: int, page: int = 1000) -> AsyncIterator[BlobListing]:
        """Yield every blob a worker lists."""
        return list_blobs(self.session, self.url_of(worker), page)

    async def copy(self, record: IndexRecord, source: int, dest: int) -> tuple[int, str]:
        """Stream ``record``'s blob from ``source`` to ``dest``, followed by the record's
        metadata if it has any; return what ``dest`` holds."""
        blob = blob_id(record.key, record.version)
        source_url = self.url_of(source)
        try:
            frame = meta_frame(record.meta) if record.meta else b""
        except RecordError as exc:
            raise ReplicaError(f"{record.key!r} cannot be copied: {exc}") from None
        with _talking_to(source_url):
            async with self.session.get(blob_url(source_url, blob)) as resp:
                if resp.status != 200:
                    raise ReplicaError(f"worker {source} answered {resp.status}")
                chunks: AsyncIterator[bytes] = resp.content.iter_chunked(COPY_CHUNK)
                return await upload(
                    self.session,
                    self.url_of(dest),
                    blob,
                    record.key,
                    record.version,
                    _followed_by(chunks, frame) if frame else chunks,
                    record.size,
                    meta_follows=bool(frame),
                )

    async def close(self) -> None:
        """Stop the batches under way."""
        await self.batcher.close()
