"""The Python client: ``Client(url)`` for blocking code, ``AsyncClient(url)`` for asyncio.

Both speak the HTTP API of docs/api.md through one pooled httpx client, follow the master's
redirects to the workers, check every whole value they read against its MD5, and raise the
typed exceptions of ``kittenfs.errors``.
"""

import hashlib
import io
import os
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Self
from urllib.parse import quote

import httpx

from .errors import CorruptValue, KeyNotFound, KittenError, ServerError, error_for_status
from .keys import is_reserved

#: Bytes per chunk when streaming values.
CHUNK = 1024 * 1024
#: Seconds to wait for a connection, and for progress on one.
TIMEOUT = httpx.Timeout(60.0, connect=10.0)

Value = bytes | bytearray | memoryview | BinaryIO | IO[bytes] | str | os.PathLike[str]


@dataclass(frozen=True)
class ValueInfo:
    """What HEAD tells of a value: its size and MD5."""

    size: int
    md5: str


def key_path(key: str) -> str:
    """Return the URL path of a key (a leading "/" is added if missing).

    Keys named like a master route (``/health``, ``/_x``, ``/put/x``...) get their first
    character percent-encoded, so they address the key and not the route; so do ``.`` and
    ``..`` segments and a leading ``//``, which URL normalisation would otherwise rewrite.
    """
    if not key.startswith("/"):
        key = "/" + key
    segments = quote(key, safe="/").split("/")
    path = "/".join(s.replace(".", "%2E") if s in (".", "..") else s for s in segments)
    if path.startswith("//"):
        path = "/%2F" + path[2:]
    if is_reserved(path):
        path = f"/%{ord(path[1]):02X}{path[2:]}"
    return path


def _raise_for(response: httpx.Response, key: str) -> None:
    if response.status_code < 400:
        return
    detail = ""
    if response.headers.get("content-type", "").startswith("application/json"):
        try:
            body = response.json()
            detail = f"{body.get('error')}: {body.get('detail')}"
        except ValueError:
            pass
    message = f"{response.request.method} {key}: {response.status_code} {detail}".strip()
    raise error_for_status(response.status_code, message, detail)


def _body(value: Value) -> tuple[Any, dict[str, str]]:
    """Return an httpx body for ``value`` and the headers that announce its size."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), {}
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        return _file_chunks(path), {"Content-Length": str(path.stat().st_size)}
    headers = {}
    try:
        headers["Content-Length"] = str(os.fstat(value.fileno()).st_size - value.tell())
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    return _stream_chunks(value), headers


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from _stream_chunks(handle)


def _stream_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk


class Client:
    """A blocking client of one kittenFS master."""

    def __init__(self, url: str = "http://127.0.0.1:3000", timeout: httpx.Timeout = TIMEOUT):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout, follow_redirects=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self.http.close()

    def _request(self, method: str, key: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, key_path(key), **kwargs)
        except httpx.HTTPError as exc:
            raise ServerError(f"{method} {key}: {type(exc).__name__}: {exc}") from exc
        _raise_for(response, key)
        return response

    def put(self, key: str, value: Value, create_only: bool = False) -> str:
        """Store ``value`` (bytes, a binary file object, or a path) under ``key``; return its MD5.

        With ``create_only``, raise Conflict if the key exists.
        """
        content, headers = _body(value)
        if create_only:
            headers["If-None-Match"] = "*"
        response = self._request("PUT", key, content=content, headers=headers)
        return response.headers["etag"].strip('"')

    def get(self, key: str) -> bytes:
        """Return the value of ``key``; raise KeyNotFound or CorruptValue.

        If the worker the master redirects to fails, the value is fetched once more through
        the master (``?direct``), which tries each live replica in turn.
        """
        try:
            response = self._request("GET", key)
        except ServerError:
            response = self._request("GET", key, params={"direct": ""})
        _check_md5(key, response.content, response.headers.get("content-md5"))
        return response.content

    def open(self, key: str) -> "ValueReader":
        """Return a file-like reader that streams the value of ``key`` (use it in ``with``)."""
        stream = self.http.stream("GET", key_path(key))
        try:
            response = stream.__enter__()
        except httpx.HTTPError as exc:
            raise ServerError(f"GET {key}: {exc}") from exc
        if response.status_code >= 400:
            response.read()
            stream.__exit__(None, None, None)
            _raise_for(response, key)
        return ValueReader(key, response, stream)

    def head(self, key: str) -> ValueInfo:
        """Return the size and MD5 of ``key``'s value; raise KeyNotFound."""
        response = self._request("HEAD", key)
        return ValueInfo(int(response.headers["content-length"]), response.headers["content-md5"])

    def exists(self, key: str) -> bool:
        """Return True if ``key`` has a live value."""
        try:
            self.head(key)
        except KeyNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        """Delete ``key`` and its replicas; raise KeyNotFound if absent."""
        self._request("DELETE", key)

    def unlink(self, key: str) -> None:
        """Hide ``key`` from reads and listing, keeping its bytes until a delete."""
        self._request("UNLINK", key)

    def list(self, prefix: str = "/", page_size: int = 1000, unlinked: bool = False
             ) -> Iterator[str]:
        """Yield every key under ``prefix`` in byte order, following pages."""
        params: dict[str, str | int] = {"unlinked" if unlinked else "list": "",
                                        "limit": page_size}
        while True:
            page = self._request("GET", prefix, params=params).json()
            yield from page["keys"]
            if not page["next"]:
                return
            params["start"] = page["next"]

    def cluster(self, keys: bool = False) -> dict[str, Any]:
        """Return the master's /_cluster description (with ``keys``, also the counts of
        under-replicated and misplaced keys, which reads the whole index)."""
        return self._admin("GET", "/_cluster", params={"keys": "1"} if keys else {})

    def start_job(self, kind: str, **options: Any) -> dict[str, Any]:
        """Start a master job ("rebalance" or "repair"); return its description."""
        return self._admin("POST", f"/_jobs/{kind}", json=options)

    def drain(self, worker: int, **options: Any) -> dict[str, Any]:
        """Start draining a worker (a "drain" job); return the job's description."""
        return self._admin("POST", f"/_workers/{worker}/drain", json=options)

    def remove_worker(self, worker: int, force: bool = False) -> None:
        """Forget a stopped, drained worker; raise Conflict while a key still needs it."""
        self._admin("DELETE", f"/_workers/{worker}", params={"force": "1"} if force else {})

    def job(self, job_id: str) -> dict[str, Any]:
        """Return a job's progress."""
        return self._admin("GET", f"/_jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel a running job; return its description."""
        return self._admin("DELETE", f"/_jobs/{job_id}")

    def _admin(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Call one of the master's own routes and return its JSON answer."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        _raise_for(response, path)
        result: dict[str, Any] = response.json() if response.content else {}
        return result

    def mapping(self, prefix: str = "/") -> "KeyValueMapping":
        """Return a MutableMapping view of the keys under ``prefix``."""
        return KeyValueMapping(self, prefix)


def _check_md5(key: str, data: bytes, expected: str | None) -> None:
    if expected and hashlib.md5(data, usedforsecurity=False).hexdigest() != expected:
        raise CorruptValue(f"GET {key}: the bytes do not match MD5 {expected}")


class ValueReader(io.RawIOBase):
    """A value being streamed; reading to the end checks its MD5 (CorruptValue if wrong)."""

    def __init__(self, key: str, response: httpx.Response, stream: Any) -> None:
        super().__init__()
        self.key = key
        self.size = int(response.headers.get("content-length", -1))
        self.md5 = response.headers.get("content-md5")
        self._stream = stream
        self._chunks = response.iter_raw(CHUNK)
        self._pending = b""
        self._digest = hashlib.md5(usedforsecurity=False)
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._done:
            try:
                self._pending = next(self._chunks)
                self._digest.update(self._pending)
            except StopIteration:
                self._done = True
                if self.md5 and self._digest.hexdigest() != self.md5:
                    raise CorruptValue(f"GET {self.key}: the bytes do not match MD5 {self.md5}")
            except httpx.HTTPError as exc:
                raise ServerError(f"GET {self.key}: {exc}") from exc
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def close(self) -> None:
        if not self.closed:
            self._stream.__exit__(None, None, None)
        super().close()


class KeyValueMapping(MutableMapping[str, bytes]):
    """A dict-like view of the keys under a prefix: ``m["a"]`` is the key ``<prefix>a``."""

    def __init__(self, client: Client, prefix: str = "/") -> None:
        self.client = client
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"

    def __getitem__(self, name: str) -> bytes:
        return self.client.get(self.prefix + name)

    def __setitem__(self, name: str, value: bytes) -> None:
        self.client.put(self.prefix + name, value)

    def __delitem__(self, name: str) -> None:
        self.client.delete(self.prefix + name)

    def __iter__(self) -> Iterator[str]:
        for key in self.client.list(self.prefix):
            yield key[len(self.prefix):]

    def __len__(self) -> int:
        return sum(1 for _ in self.client.list(self.prefix))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.client.exists(self.prefix + name)


class AsyncClient:
    """The asyncio twin of Client, for the same API."""

    def __init__(self, url: str = "http://127.0.0.1:3000", timeout: httpx.Timeout = TIMEOUT):
        self.url = url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.url, timeout=timeout, follow_redirects=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pooled connections."""
        await self.http.aclose()

    async def _request(self, method: str, key: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, key_path(key), **kwargs)
        except httpx.HTTPError as exc:
            raise ServerError(f"{method} {key}: {type(exc).__name__}: {exc}") from exc
        _raise_for(response, key)
        return response

    async def put(self, key: str, value: bytes, create_only: bool = False) -> str:
        """Store ``value`` under ``key``; return its MD5."""
        headers = {"If-None-Match": "*"} if create_only else {}
        response = await self._request("PUT", key, content=value, headers=headers)
        return response.headers["etag"].strip('"')

    async def get(self, key: str) -> bytes:
        """Return the value of ``key``; raise KeyNotFound or CorruptValue."""
        response = await self._request("GET", key)
        _check_md5(key, response.content, response.headers.get("content-md5"))
        return response.content

    async def head(self, key: str) -> ValueInfo:
        """Return the size and MD5 of ``key``'s value."""
        response = await self._request("HEAD", key)
        return ValueInfo(int(response.headers["content-length"]), response.headers["content-md5"])

    async def exists(self, key: str) -> bool:
        """Return True if ``key`` has a live value."""
        try:
            await self.head(key)
        except KeyNotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        """Delete ``key``; raise KeyNotFound if absent."""
        await self._request("DELETE", key)

    async def unlink(self, key: str) -> None:
        """Hide ``key`` from reads and listing."""
        await self._request("UNLINK", key)

    async def list(self, prefix: str = "/", page_size: int = 1000, unlinked: bool = False
                   ) -> AsyncIterator[str]:
        """Yield every key under ``prefix`` in byte order, following pages."""
        params: dict[str, str | int] = {"unlinked" if unlinked else "list": "",
                                        "limit": page_size}
        while True:
            page = (await self._request("GET", prefix, params=params)).json()
            for key in page["keys"]:
                yield key
            if not page["next"]:
                return
            params["start"] = page["next"]


__all__ = ["AsyncClient", "Client", "KeyValueMapping", "KittenError", "ValueInfo", "ValueReader"]
