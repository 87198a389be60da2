"""Replica I/O: how the master talks to workers about blobs.

One pooled aiohttp session per master process, with keep-alive connections to every worker.
The worker's blob API is documented in docs/api.md ("Worker API").
"""

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from urllib.parse import quote

import aiohttp

#: Seconds to wait for a worker to accept a connection.
CONNECT_TIMEOUT = 5.0


class ReplicaError(Exception):
    """A worker failed an operation on a blob; the message names the worker and the cause.

    ``unreachable`` is True when the worker could not be talked to at all (refused, reset,
    timed out), as opposed to answering with an error.
    """

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@contextmanager
def _talking_to(worker_url: str) -> Iterator[None]:
    """Turn any transport failure while talking to a worker into a ReplicaError."""
    try:
        yield
    except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
        raise ReplicaError(f"{worker_url}: {type(exc).__name__}: {exc}", unreachable=True) from None
    except aiohttp.ClientError as exc:
        raise ReplicaError(f"{worker_url}: {type(exc).__name__}: {exc}") from None


def new_session(read_timeout: float) -> aiohttp.ClientSession:
    """Return the master's pooled session to the workers.

    ``read_timeout`` bounds each wait for a worker's answer (not the whole transfer).
    """
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=read_timeout)
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    return aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False)


def blob_url(worker_url: str, blob: str) -> str:
    """Return the URL at which a worker serves a blob."""
    return f"{worker_url}/blob/{blob}"


async def upload(session: aiohttp.ClientSession, worker_url: str, blob: str, key: str,
                 version: str, body: AsyncIterator[bytes], size: int | None) -> tuple[int, str]:
    """Stream ``body`` to a worker as a blob; return the (size, MD5) it made durable."""
    headers = {"X-Kfs-Key": quote(key, safe=""), "X-Kfs-Version": version,
               "Content-Type": "application/octet-stream"}
    if size is not None:
        headers["Content-Length"] = str(size)
    with _talking_to(worker_url):
        async with session.put(blob_url(worker_url, blob), data=body, headers=headers) as resp:
            if resp.status != 201:
                raise ReplicaError(f"{worker_url} answered {resp.status}: {await resp.text()}")
            result = await resp.json()
            return int(result["size"]), str(result["md5"])


async def delete(session: aiohttp.ClientSession, worker_url: str, blob: str) -> None:
    """Delete a blob on a worker; succeed if it is gone (or was never there)."""
    with _talking_to(worker_url):
        async with session.delete(blob_url(worker_url, blob)) as resp:
            if resp.status not in (204, 404):
                raise ReplicaError(f"{worker_url} answered {resp.status}: {await resp.text()}")
