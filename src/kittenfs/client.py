"""The Python client: ``Client(url)`` for blocking code, ``AsyncClient(url)`` for asyncio.

Both speak the HTTP API of docs/api.md through one pooled httpx client, follow the master's
redirects to the workers, check every whole value they read against its MD5, and raise the
typed exceptions of ``kittenfs.errors``.  A read whose replica fails (or whose bytes do
not match) is made again through the master, which takes the next replica.

Credentials: ``token=`` (default ``$KITTENFS_TOKEN``) is sent as ``Authorization: Bearer``
to the master only (httpx drops it on a redirect to a worker, which takes the master's
signed link instead); ``ca=`` names the PEM file of the CA that signed the cluster's TLS
certificates.
"""

import asyncio
import contextlib
import hashlib
import io
import os
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Self

import httpx

from .errors import CorruptValue, KeyNotFound, KittenError, ServerError, error_for_status
from .keys import key_path

#: The environment variable a client takes its token from, when none is given.
TOKEN_ENV = "KITTENFS_TOKEN"
#: Bytes per chunk when streaming values.
CHUNK = 1024 * 1024
#: Seconds to wait for a connection, and for progress on one.
TIMEOUT = httpx.Timeout(60.0, connect=10.0)

Value = bytes | bytearray | memoryview | BinaryIO | IO[bytes] | str | os.PathLike[str]


#: Credentials as ``GET /_keys`` lists them.
Credentials = list[dict[str, Any]]


@dataclass(frozen=True)
class ValueInfo:
    """What HEAD tells of a value: its size and MD5."""

    size: int
    md5: str


def _failed(what: str, exc: httpx.HTTPError) -> ServerError:
    """Return the error of a request that got no answer; one that could not connect names
    the server it tried (the master, or the worker it redirected to)."""
    if not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ServerError(f"{what}: {type(exc).__name__}: {exc}")
    try:
        url = exc.request.url
        where = f"{url.scheme}://{url.netloc.decode()}"
    except RuntimeError:  # no request attached
        where = "the server"
    reason = "connection refused" if "refused" in str(exc).lower() else str(exc) or "timed out"
    return ServerError(f"{what}: cannot connect to {where} ({reason})")


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
    with contextlib.suppress(AttributeError, OSError, io.UnsupportedOperation):
        headers["Content-Length"] = str(os.fstat(value.fileno()).st_size - value.tell())
    return _stream_chunks(value), headers


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from _stream_chunks(handle)


def _stream_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk


def _async_body(value: Value) -> tuple[Any, dict[str, str]]:
    """Return an httpx body for ``value`` that an AsyncClient can send, and the headers that
    announce its size: a file (or path) is read a chunk at a time in a thread, so a large
    value is streamed without holding the event loop."""
    content, headers = _body(value)
    if isinstance(content, bytes):
        return content, headers
    return _in_thread(content), headers


async def _in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Yield ``chunks``, each read in a thread (they come from a file)."""
    while chunk := await asyncio.to_thread(next, chunks, b""):
        yield chunk


def _range_header(start: int, stop: int | None) -> str:
    """Return the ``Range`` of bytes ``start`` to ``stop`` (excluded; None: to the end)."""
    return f"bytes={start}-" if stop is None else f"bytes={start}-{stop - 1}"


def _range_body(response: httpx.Response, start: int, stop: int | None) -> bytes:
    """Return the bytes asked for from a ranged GET's answer: a 206's body, or the slice of
    a whole value (a server may ignore ``Range`` and answer 200)."""
    if response.status_code == 206:
        return response.content
    return response.content[start:stop]


def _headers(token: str | None) -> dict[str, str]:
    """Return the headers that carry a credential (``token``, else $KITTENFS_TOKEN)."""
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    return {"Authorization": f"Bearer {token}"} if token else {}


class _TLSWhenNeeded(httpx.BaseTransport):
    """httpx's transport, with its TLS context made at the first HTTPS request: reading the
    CA bundle takes about 50 ms, a third of a CLI command that talks plain HTTP."""

    def __init__(self, ca: str | os.PathLike[str] | None) -> None:
        self._ca = ca
        self._plain = httpx.HTTPTransport(verify=False)  # never used for https://
        self._tls: httpx.HTTPTransport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "https":
            return self._plain.handle_request(request)
        if self._tls is None:
            verify = ssl.create_default_context(cafile=str(self._ca)) if self._ca else True
            self._tls = httpx.HTTPTransport(verify=verify)
        return self._tls.handle_request(request)

    def close(self) -> None:
        self._plain.close()
        if self._tls is not None:
            self._tls.close()


def master_urls(url: str) -> list[httpx.URL]:
    """Return the masters ``url`` names: one URL, or several comma-separated (masters that
    share an index, docs/architecture.md)."""
    return [httpx.URL(part.strip().rstrip("/")) for part in url.split(",") if part.strip()]


class _Masters:
    """Where a request to the master goes: to the master that last took a connection, and,
    should it refuse one, to the next in turn.  Only a failure to connect moves a request on
    (nothing of it was sent), so a request is never made twice; requests to others (the
    workers a read is redirected to) go where they are addressed."""

    def __init__(self, urls: list[httpx.URL]) -> None:
        self.urls = urls
        self.current = 0

    def targets(self, request: httpx.Request) -> list[httpx.URL]:
        """Return the URLs to try ``request`` at, in order."""
        if len(self.urls) < 2 or _origin(request.url) not in map(_origin, self.urls):
            return [request.url]
        turn = self.urls[self.current :] + self.urls[: self.current]
        return [request.url.copy_with(scheme=u.scheme, host=u.host, port=u.port) for u in turn]

    def aim(self, request: httpx.Request, url: httpx.URL) -> None:
        """Point ``request`` at ``url`` (and its Host header with it)."""
        if url != request.url:
            request.url = url
            request.headers["Host"] = url.netloc.decode("ascii")

    def took(self, url: httpx.URL) -> None:
        """Remember the master that took a connection."""
        for i, master in enumerate(self.urls):
            if _origin(master) == _origin(url):
                self.current = i


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


#: The errors that mean a request was not sent at all: it may go to another master.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class _FailingOver(httpx.BaseTransport):
    """A transport that moves a request to the next master when one refuses a connection."""

    def __init__(self, inner: httpx.BaseTransport, masters: _Masters) -> None:
        self.inner = inner
        self.masters = masters

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        *others, last = self.masters.targets(request)
        for url in others:
            self.masters.aim(request, url)
            try:
                response = self.inner.handle_request(request)
            except _NOT_SENT:
                continue
            self.masters.took(url)
            return response
        self.masters.aim(request, last)
        response = self.inner.handle_request(request)
        self.masters.took(last)
        return response

    def close(self) -> None:
        self.inner.close()


class _AsyncFailingOver(httpx.AsyncBaseTransport):
    """The asyncio twin of _FailingOver."""

    def __init__(self, inner: httpx.AsyncBaseTransport, masters: _Masters) -> None:
        self.inner = inner
        self.masters = masters

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        *others, last = self.masters.targets(request)
        for url in others:
            self.masters.aim(request, url)
            try:
                response = await self.inner.handle_async_request(request)
            except _NOT_SENT:
                continue
            self.masters.took(url)
            return response
        self.masters.aim(request, last)
        response = await self.inner.handle_async_request(request)
        self.masters.took(last)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class Client:
    """A blocking client of kittenFS: of one master, or of several sharing an index
    (``url`` "http://m1:3000,http://m2:3000": a request that cannot connect to one goes to
    the next)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:3000",
        timeout: httpx.Timeout = TIMEOUT,
        token: str | None = None,
        ca: str | os.PathLike[str] | None = None,
    ):
        masters = master_urls(url)
        self.url = str(masters[0])
        self.http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            follow_redirects=True,
            headers=_headers(token),
            transport=_FailingOver(_TLSWhenNeeded(ca), _Masters(masters)),
        )

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
            raise _failed(f"{method} {key}", exc) from exc
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
        """Return the value of ``key``; raise KeyNotFound, or CorruptValue if no replica
        serves bytes that match its MD5.

        If the worker the master redirects to fails, or its bytes do not match, the value is
        fetched once more through the master (``?direct``), which tries each live replica in
        turn, and goes on from another if one fails part way.
        """
        try:
            return _checked(key, self._request("GET", key))
        except (ServerError, CorruptValue):
            return _checked(key, self._request("GET", key, params={"direct": ""}))

    def open(self, key: str) -> "ValueReader":
        """Return a file-like reader that streams the value of ``key`` (use it in ``with``);
        if the stream breaks, it goes on through the master from the next byte."""

        def start(offset: int, direct: bool) -> tuple[httpx.Response, Any]:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            stream = self.http.stream(
                "GET", key_path(key), headers=headers, params={"direct": ""} if direct else {}
            )
            try:
                response = stream.__enter__()
            except httpx.HTTPError as exc:
                raise _failed(f"GET {key}", exc) from exc
            if response.status_code >= 400:
                response.read()
                stream.__exit__(None, None, None)
                _raise_for(response, key)
            return response, stream

        return ValueReader(key, *start(0, False), lambda offset: start(offset, True))

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

    def list(
        self, prefix: str = "/", page_size: int = 1000, unlinked: bool = False
    ) -> Iterator[str]:
        """Yield every key under ``prefix`` in byte order, following pages."""
        params: dict[str, str | int] = {"unlinked" if unlinked else "list": "", "limit": page_size}
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

    def create_key(
        self, role: str, prefix: str = "/", expires: float | None = None
    ) -> dict[str, Any]:
        """Create a credential (``role``: read, write or admin; confined to keys under
        ``prefix``; valid for ``expires`` seconds, or for ever); return it with its
        ``access_key``, ``secret_key`` and ``token``, which are shown this once only."""
        body: dict[str, Any] = {"role": role, "prefix": prefix}
        if expires is not None:
            body["expires_s"] = expires
        return self._admin("POST", "/_keys", json=body)

    def keys(self) -> "Credentials":
        """Return every credential (never a secret)."""
        keys: Credentials = self._admin("GET", "/_keys")["keys"]
        return keys

    def revoke_key(self, access_key: str) -> None:
        """Revoke a credential; raise KeyNotFound if there is none with this access key."""
        self._admin("DELETE", f"/_keys/{access_key}")

    def sign(self, key: str, method: str = "GET", expires: float = 3600) -> str:
        """Return a URL that lets anyone do ``method`` (GET or PUT) on ``key`` for
        ``expires`` seconds, as this client's credential may."""
        answer = self._admin(
            "POST", "/_sign", json={"key": key, "method": method, "expires_s": expires}
        )
        url: str = answer["url"]
        return url

    def _admin(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Call one of the master's own routes and return its JSON answer."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _failed(f"{method} {path}", exc) from exc
        _raise_for(response, path)
        result: dict[str, Any] = response.json() if response.content else {}
        return result

    def mapping(self, prefix: str = "/") -> "KeyValueMapping":
        """Return a MutableMapping view of the keys under ``prefix``."""
        return KeyValueMapping(self, prefix)


def _checked(key: str, response: httpx.Response) -> bytes:
    """Return a response's body once it matches the value's MD5; raise CorruptValue if not."""
    expected = response.headers.get("content-md5")
    if expected and hashlib.md5(response.content, usedforsecurity=False).hexdigest() != expected:
        raise CorruptValue(f"GET {key}: the bytes do not match MD5 {expected}")
    return response.content


#: Times a streamed read goes on after its stream broke.
RESUMES = 3


class ValueReader(io.RawIOBase):
    """A value being streamed; reading to the end checks its MD5 (CorruptValue if wrong).

    If the stream breaks part way, ``reopen(offset)`` fetches the rest (of the same version:
    a changed ETag ends the read with ServerError) up to RESUMES times.
    """

    def __init__(
        self,
        key: str,
        response: httpx.Response,
        stream: Any,
        reopen: Callable[[int], tuple[httpx.Response, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.key = key
        self.size = int(response.headers.get("content-length", -1))
        self.md5 = response.headers.get("content-md5")
        self._etag = response.headers.get("etag")
        self._stream = stream
        self._chunks = response.iter_raw(CHUNK)
        self._pending = b""
        self._digest = hashlib.md5(usedforsecurity=False)
        self._done = False
        self._offset = 0
        self._reopen = reopen
        self._resumes = RESUMES

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._done:
            try:
                self._pending = next(self._chunks)
                self._digest.update(self._pending)
                self._offset += len(self._pending)
            except StopIteration:
                self._done = True
                if self.md5 and self._digest.hexdigest() != self.md5:
                    raise CorruptValue(
                        f"GET {self.key}: the bytes do not match MD5 {self.md5}"
                    ) from None
            except httpx.HTTPError as exc:
                self._resume(exc)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _resume(self, exc: httpx.HTTPError) -> None:
        """Go on from the first byte not yet read, through the master; raise ServerError if
        that is not possible."""
        if self._reopen is None or not self._resumes:
            raise ServerError(f"GET {self.key}: {exc}") from exc
        self._resumes -= 1
        self._stream.__exit__(None, None, None)
        response, self._stream = self._reopen(self._offset)
        if response.headers.get("etag") != self._etag or (
            self._offset
            and not response.headers.get("content-range", "").startswith(f"bytes {self._offset}-")
        ):
            raise ServerError(f"GET {self.key}: the value changed while it was read")
        self._chunks = response.iter_raw(CHUNK)

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
            yield key[len(self.prefix) :]

    def __len__(self) -> int:
        return sum(1 for _ in self.client.list(self.prefix))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.client.exists(self.prefix + name)


class AsyncClient:
    """The asyncio twin of Client, for the same API (several masters too)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:3000",
        timeout: httpx.Timeout = TIMEOUT,
        token: str | None = None,
        ca: str | os.PathLike[str] | None = None,
    ):
        masters = master_urls(url)
        self.url = str(masters[0])
        verify = ssl.create_default_context(cafile=str(ca)) if ca else True
        self.http = httpx.AsyncClient(
            base_url=self.url,
            timeout=timeout,
            follow_redirects=True,
            headers=_headers(token),
            transport=_AsyncFailingOver(httpx.AsyncHTTPTransport(verify=verify), _Masters(masters)),
        )

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
            raise _failed(f"{method} {key}", exc) from exc
        _raise_for(response, key)
        return response

    async def put(self, key: str, value: Value, create_only: bool = False) -> str:
        """Store ``value`` (bytes, a binary file object, or a path: streamed, a chunk at a
        time) under ``key``; return its MD5.  With ``create_only``, raise Conflict if the key
        exists."""
        content, headers = _async_body(value)
        if create_only:
            headers["If-None-Match"] = "*"
        response = await self._request("PUT", key, content=content, headers=headers)
        return response.headers["etag"].strip('"')

    async def get(self, key: str) -> bytes:
        """Return the value of ``key``; raise KeyNotFound, or CorruptValue if no replica
        serves bytes that match its MD5 (a failed read is made again through the master)."""
        try:
            return _checked(key, await self._request("GET", key))
        except (ServerError, CorruptValue):
            return _checked(key, await self._request("GET", key, params={"direct": ""}))

    async def get_range(
        self, key: str, start: int, stop: int | None = None, md5: str | None = None
    ) -> bytes:
        """Return bytes ``start`` to ``stop`` (excluded; None: to the end) of ``key``'s value,
        fewer if it ends first; raise BadRequest (416) if ``start`` is past its end.

        A range cannot be checked against the value's MD5; with ``md5`` (from ``head``),
        raise ServerError if the value is another version by now, so that the ranges of one
        read never mix two versions.
        """
        headers = {"Range": _range_header(start, stop)}
        response = await self._request("GET", key, headers=headers)
        if md5 is not None and response.headers.get("content-md5", md5) != md5:
            raise ServerError(f"GET {key}: the value changed while it was read")
        return _range_body(response, start, stop)

    async def stream(self, key: str, direct: bool = False) -> AsyncGenerator[bytes, None]:
        """Yield the value of ``key`` a chunk at a time; raise KeyNotFound, or CorruptValue at
        the end if the bytes do not match its MD5.  With ``direct``, the master streams it
        from a replica that serves it (as ``get`` does for a failed read).  Close the
        iterator (``contextlib.aclosing``) if it is not read to the end."""
        params = {"direct": ""} if direct else {}
        try:
            async with self.http.stream("GET", key_path(key), params=params) as response:
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for(response, key)
                expected = response.headers.get("content-md5")
                digest = hashlib.md5(usedforsecurity=False)
                async for chunk in response.aiter_raw(CHUNK):
                    digest.update(chunk)
                    yield chunk
        except httpx.HTTPError as exc:
            raise _failed(f"GET {key}", exc) from exc
        if expected and digest.hexdigest() != expected:
            raise CorruptValue(f"GET {key}: the bytes do not match MD5 {expected}")

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

    async def list_page(
        self,
        prefix: str = "/",
        start: str | None = None,
        page_size: int = 1000,
        unlinked: bool = False,
    ) -> tuple[list[str], str]:
        """Return one page of the keys under ``prefix`` from ``start`` (included) on, and the
        key the next page starts at ("" after the last): for a caller that skips ahead."""
        params: dict[str, str | int] = {"unlinked" if unlinked else "list": "", "limit": page_size}
        if start is not None:
            params["start"] = start
        page = (await self._request("GET", prefix, params=params)).json()
        return page["keys"], page["next"]

    async def list(
        self, prefix: str = "/", page_size: int = 1000, unlinked: bool = False
    ) -> AsyncIterator[str]:
        """Yield every key under ``prefix`` in byte order, following pages."""
        start: str | None = None
        while True:
            keys, start = await self.list_page(prefix, start, page_size, unlinked)
            for key in keys:
                yield key
            if not start:
                return


__all__ = ["AsyncClient", "Client", "KeyValueMapping", "KittenError", "ValueInfo", "ValueReader"]
