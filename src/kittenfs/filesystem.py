"""``kittenfs://host:port/path/to/key``: kittenFS as an fsspec filesystem.

fsspec finds it through the ``fsspec.specs`` entry point, so whatever reads through fsspec
(pandas, pyarrow, dask, Hugging Face ``datasets``) takes kittenFS paths.  Keys are paths, and
a directory is a prefix that ends in ``/``: it exists while a key is under it, and
``mkdir`` makes nothing.  Every request goes through ``AsyncClient`` (its masters, token, TLS
and redirects to the workers).

Where the master is, and as whom (the first that gives it wins):

- storage options ``url`` (one master URL, or several comma-separated), ``token``, ``ca``;
- the URL's ``host:port``, over ``scheme`` (by default the scheme of the configured URL
  when it names the same host and port, else ``http``);
- as the client commands do: ``$KITTENFS_URL``, ``$KITTENFS_TOKEN``, ``$KITTENFS_CA``, then the
  ``[client]`` table of the config file ``config`` (or ``$KITTENFS_CONFIG``).

Errors become what file code expects: a missing key FileNotFoundError, a refused
credential PermissionError, anything else OSError with the server's message.
"""

import argparse
import asyncio
import contextlib
import errno
import os
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
from fsspec.asyn import AsyncFileSystem, _run_coros_in_chunks, sync
from fsspec.callbacks import DEFAULT_CALLBACK, Callback
from fsspec.spec import AbstractBufferedFile

from . import settings
from .client import AsyncClient, master_urls
from .config import ClientConfig
from .errors import (
    AccessDenied,
    BadRequest,
    Conflict,
    CorruptValue,
    KeyNotFound,
    KittenError,
    ServerError,
)

PROTOCOL = "kittenfs"
#: Keys asked for per listing page (the master's default; it allows 1 to 10000).
PAGE_SIZE = 1000
#: HEADs in flight at once when a listing asks for the size of each key.
HEADS = 32

Info = dict[str, Any]


@contextlib.contextmanager
def os_errors(path: str) -> Iterator[None]:
    """Raise a kittenFS error of the block as the OSError file code expects for ``path``."""
    try:
        yield
    except KeyNotFound as exc:
        raise FileNotFoundError(errno.ENOENT, str(exc), path) from exc
    except AccessDenied as exc:
        raise PermissionError(errno.EACCES, str(exc), path) from exc
    except Conflict as exc:
        raise FileExistsError(errno.EEXIST, str(exc), path) from exc
    except KittenError as exc:
        raise OSError(errno.EIO, str(exc), path) from exc


def _file(name: str, size: int, md5: str) -> Info:
    return {"name": name, "size": size, "type": "file", "md5": md5, "ETag": f'"{md5}"'}


def _directory(name: str) -> Info:
    return {"name": name, "size": 0, "type": "directory"}


def _prefix(path: str) -> str:
    """Return the prefix of the keys inside directory ``path``."""
    return path if path.endswith("/") else path + "/"


def _past(directory: str) -> str:
    """Return the first key after every key inside ``directory`` ("/" + 1 is "0")."""
    return directory + "0"


def _depth(name: str, prefix: str) -> int:
    """Return how many levels below ``prefix`` the key ``name`` is (1: directly in it)."""
    return name[len(prefix) :].count("/") + 1


def _close(loop: asyncio.AbstractEventLoop | None, client: AsyncClient) -> None:
    """Close ``client``'s connections on fsspec's loop, if it still runs."""
    if loop is not None and loop.is_running() and not loop.is_closed():
        with contextlib.suppress(Exception):
            sync(loop, client.close, timeout=1)


class KittenFileSystem(AsyncFileSystem):  # type: ignore[misc]
    """kittenFS as an fsspec filesystem: paths are keys, directories are prefixes."""

    protocol: ClassVar[str] = PROTOCOL
    root_marker: ClassVar[str] = "/"

    def __init__(
        self,
        host: str | None = None,
        url: str | None = None,
        token: str | None = None,
        ca: str | None = None,
        scheme: str | None = None,
        config: str | None = None,
        page_size: int = PAGE_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        given = {"url": url, "token": token, "ca": ca, "config": config}
        configured = settings.resolve(
            ClientConfig, argparse.Namespace(**{k: v for k, v in given.items() if v})
        )
        self.url = url or _master_url(host, scheme, configured.url)
        self.page_size = page_size
        # A token from the environment or the config file goes only to the masters they
        # name: a kittenfs:// URL found in data must not carry it to any host.
        configured_master = not host or _configured(host, configured.url) is not None
        sent = configured.token if token or url or configured_master else ""  # "": none
        self.client = AsyncClient(self.url, token=sent, ca=configured.ca)
        weakref.finalize(self, _close, self._loop, self.client)

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """Return the key path of ``path``: no scheme, no host, a leading and no trailing /
        (of each, for a list)."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith(f"{PROTOCOL}://"):  # the key is all after the host, "#" and "?" too
            path = path[len(PROTOCOL) + 3 :].partition("/")[2]
        return "/" + path.strip("/")

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        """Return the storage options a URL gives: the master's ``host`` (host:port)."""
        netloc = (
            path[len(PROTOCOL) + 3 :].partition("/")[0] if path.startswith(f"{PROTOCOL}://") else ""
        )
        return {"host": netloc} if netloc else {}

    def unstrip_protocol(self, name: str) -> str:
        """Return the full URL of path ``name``, this filesystem's master in it."""
        return f"{PROTOCOL}://{urlsplit(self.url.split(',')[0]).netloc}{self._strip_protocol(name)}"

    async def _info(self, path: str, **kwargs: Any) -> Info:
        path = self._strip_protocol(path)
        if path == "/":
            return _directory(path)
        with os_errors(path), contextlib.suppress(KeyNotFound):
            head = await self.client.head(path)
            return _file(path, head.size, head.md5)
        with os_errors(path):
            keys, _ = await self.client.list_page(_prefix(path), page_size=1)
        if keys:
            return _directory(path)
        raise FileNotFoundError(errno.ENOENT, "no such key or directory", path)

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Info] | list[str]:
        path = self._strip_protocol(path)
        entries = [entry async for entry in self._entries(path, detail)]
        if not entries and path != "/":
            entries = [await self._info(path)]  # a file lists as itself; else not found
        if detail:
            return entries
        return [entry["name"] for entry in entries]

    async def _entries(self, path: str, detail: bool) -> AsyncIterator[Info]:
        """Yield what is directly in directory ``path`` in key order, one page in memory at a
        time (a file's size with ``detail`` only: a HEAD each).  A subdirectory is yielded
        once, and the listing skips past the rest of its keys."""
        prefix = _prefix(path)
        start: str | None = None
        last = ""
        while True:
            with os_errors(path):
                keys, start = await self.client.list_page(prefix, start, self.page_size)
            entries: list[tuple[str, bool]] = []  # (name, is a directory)
            for key in keys:
                inner = key[len(prefix) :].split("/", 1)
                name = prefix + inner[0]
                if len(inner) == 1:
                    entries.append((name, False))
                elif name != last:
                    entries.append((name, True))
                last = name if len(inner) == 2 else last
            files = [name for name, directory in entries if not directory]
            heads = {info["name"]: info for info in await self._heads(files)} if detail else {}
            for name, directory in entries:
                if directory:
                    yield _directory(name)
                elif not detail:
                    yield _file(name, 0, "")
                elif name in heads:  # (not a key deleted since the listing)
                    yield heads[name]
            if not start:
                return
            if last and start.startswith(_prefix(last)):
                start = _past(last)

    async def _heads(self, keys: list[str]) -> list[Info]:
        """Return the info of each of ``keys`` (a HEAD each, HEADS at once); a key deleted
        meanwhile is left out."""
        heads = await _run_coros_in_chunks(
            [self.client.head(key) for key in keys], batch_size=HEADS, return_exceptions=True
        )
        infos = []
        for key, head in zip(keys, heads, strict=True):
            if isinstance(head, KeyNotFound):
                continue
            if isinstance(head, BaseException):
                with os_errors(key):
                    raise head
            infos.append(_file(key, head.size, head.md5))
        return infos

    async def _find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, **kwargs: Any
    ) -> list[str] | dict[str, Info]:
        """Return every key under ``path`` (and with ``withdirs``, every directory on the
        way) from one flat listing rather than one listing per directory."""
        path = self._strip_protocol(path)
        detail = kwargs.pop("detail", False)
        found: dict[str, Info] = {}
        if withdirs and path != "/" and await self._isdir(path):
            found[path] = _directory(path)
        found.update({n: i async for n, i in self._tree(_prefix(path), maxdepth, withdirs, detail)})
        if not found and await self._isfile(path):
            found[path] = await self._info(path)
        names = sorted(found)
        return {name: found[name] for name in names} if detail else names

    async def _tree(
        self, prefix: str, maxdepth: int | None, withdirs: bool, detail: bool
    ) -> AsyncIterator[tuple[str, Info]]:
        """Yield (name, info) for each key under ``prefix`` at most ``maxdepth`` levels down,
        and each directory above them; info is the key's only with ``detail`` (a HEAD)."""
        seen: set[str] = set()
        start: str | None = None
        while True:
            with os_errors(prefix):
                keys, start = await self.client.list_page(prefix, start, self.page_size)
            if withdirs:
                for directory in self._directories(keys, prefix, maxdepth, seen):
                    yield directory, _directory(directory)
            files = [k for k in keys if maxdepth is None or _depth(k, prefix) <= maxdepth]
            infos = await self._heads(files) if detail else [_file(k, 0, "") for k in files]
            for info in infos:
                yield info["name"], info
            if not start:
                return

    @staticmethod
    def _directories(
        keys: list[str], prefix: str, maxdepth: int | None, seen: set[str]
    ) -> Iterator[str]:
        """Yield the directories between ``prefix`` and ``keys`` not in ``seen`` (and add
        them), at most ``maxdepth`` levels down."""
        for key in keys:
            parts = key[len(prefix) :].split("/")[:-1]
            for level in range(1, len(parts) + 1):
                if maxdepth is not None and level > maxdepth:
                    break
                directory = prefix + "/".join(parts[:level])
                if directory not in seen:
                    seen.add(directory)
                    yield directory

    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        path = self._strip_protocol(path)
        with os_errors(path):
            if start is None and end is None:
                return await self.client.get(path)
            return await self._range(path, start, end, kwargs.get("md5"))

    async def _range(self, path: str, start: int | None, end: int | None, md5: str | None) -> bytes:
        """Return bytes ``start`` to ``end`` of ``path`` (negative: from its end; None: from
        its start, to its end); nothing for a range that starts past the end."""
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = (await self.client.head(path)).size
            start = None if start is None else max(0, size + start) if start < 0 else start
            end = None if end is None else size + end if end < 0 else end
        start = start or 0
        if end is not None and end <= start:
            return b""
        try:
            return await self.client.get_range(path, start, end, md5)
        except BadRequest as exc:
            if exc.status == 416:  # starts at or past the end: no bytes there
                return b""
            raise

    async def _pipe_file(
        self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        path = self._strip_protocol(path)
        with os_errors(path):
            await self.client.put(path, value, create_only=mode == "create")

    async def _put_file(
        self,
        lpath: str,
        rpath: str,
        callback: Callback = DEFAULT_CALLBACK,
        mode: str = "overwrite",
        **kwargs: Any,
    ) -> None:
        """Upload local file ``lpath`` to key ``rpath``, streamed a chunk at a time."""
        if await asyncio.to_thread(os.path.isdir, lpath):
            return  # a directory needs no key; its files bring it about
        rpath = self._strip_protocol(rpath)
        size = await asyncio.to_thread(os.path.getsize, lpath)
        callback.set_size(size)
        with os_errors(rpath):
            await self.client.put(rpath, lpath, create_only=mode == "create")
        callback.relative_update(size)

    async def _get_file(
        self, rpath: str, lpath: str, callback: Callback = DEFAULT_CALLBACK, **kwargs: Any
    ) -> None:
        """Download key ``rpath`` to local file ``lpath``, streamed; a directory of a tree
        being fetched becomes a local directory."""
        rpath = self._strip_protocol(rpath)
        if await asyncio.to_thread(os.path.isdir, lpath):
            return
        try:
            await self._save(rpath, lpath, callback)
        except FileNotFoundError:
            if not await self._isdir(rpath):
                raise
            await asyncio.to_thread(os.makedirs, lpath, exist_ok=True)

    async def _save(self, key: str, lpath: str, callback: Callback) -> None:
        """Write the value of ``key`` to ``lpath``, or nothing there if that fails; a failed
        or corrupt transfer is made once more through the master (as ``AsyncClient.get``)."""
        sink = await asyncio.to_thread(open, lpath, "wb")
        try:
            with os_errors(key):
                try:
                    await self._download(key, sink, callback, direct=False)
                except (ServerError, CorruptValue):
                    sink.seek(0)
                    sink.truncate()
                    await self._download(key, sink, callback, direct=True)
        except BaseException:
            sink.close()
            await asyncio.to_thread(os.remove, lpath)
            raise
        sink.close()

    async def _download(self, key: str, sink: IO[bytes], callback: Callback, direct: bool) -> None:
        """Write the value of ``key`` to ``sink`` as it streams in."""
        async with contextlib.aclosing(self.client.stream(key, direct=direct)) as chunks:
            async for chunk in chunks:
                sink.write(chunk)
                callback.relative_update(len(chunk))

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        with os_errors(path):
            await self.client.delete(path)

    async def _rm(
        self,
        path: str | list[str],
        recursive: bool = False,
        batch_size: int | None = None,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Delete the keys ``path`` names; with ``recursive``, every key under it too (the
        directories found on the way are no keys: nothing to delete there)."""
        names = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        results = await _run_coros_in_chunks(
            [self._rm_file(name) for name in names],
            batch_size=batch_size or self.batch_size,
            nofiles=True,
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException) and not (
                recursive and isinstance(result, FileNotFoundError)
            ):
                raise result

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> "KittenFile":
        if mode not in ("rb", "wb", "xb"):
            raise ValueError(f"mode {mode!r}: kittenFS opens keys as rb, wb or xb only")
        return KittenFile(
            self,
            self._strip_protocol(path),
            mode,
            block_size="default" if block_size is None else block_size,
            autocommit=autocommit,
            cache_options=cache_options,
            **kwargs,
        )


def _master_url(host: str | None, scheme: str | None, configured: str) -> str:
    """Return the master's URL for ``host`` (host:port; None: the configured URL's)."""
    if not host:
        return configured
    if scheme is None:
        same = _configured(host, configured)
        scheme = same.scheme if same else "http"
    return f"{scheme}://{host}"


def _configured(host: str, configured: str) -> httpx.URL | None:
    """Return the configured master URL that names ``host`` (host:port), if one does."""
    return next((u for u in master_urls(configured) if u.netloc.decode() == host), None)


class KittenFile(AbstractBufferedFile):  # type: ignore[misc]
    """A key opened as a file.  Read: ranges fetched as they are needed, all of one version
    (the one ``info`` saw).  Written: buffered to a local temporary file, so memory stays
    bounded whatever the size, and stored by one streamed PUT on ``close``; a ``with`` block
    that raises stores nothing."""

    fs: KittenFileSystem

    def _fetch_range(self, start: int, end: int) -> bytes:
        md5 = self.details.get("md5")
        data: bytes = sync(self.fs.loop, self.fs._cat_file, self.path, start, end, md5=md5)
        return data

    def _initiate_upload(self) -> None:
        # Closed once stored (_upload_chunk) or thrown away (discard).
        self._spool: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115

    def _upload_chunk(self, final: bool = False) -> Literal[True]:
        self.buffer.seek(0)
        shutil.copyfileobj(self.buffer, self._spool)
        if final:
            self._spool.seek(0)
            try:
                with os_errors(self.path):
                    sync(self.fs.loop, self._store)
            finally:
                self._spool.close()
        return True

    async def _store(self) -> None:
        await self.fs.client.put(self.path, self._spool, create_only=self.mode == "xb")

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None:
            self.discard()
        self.close()

    def discard(self) -> None:
        """Throw away what was written: ``close`` then stores nothing."""
        if self.writable():
            self.forced = True  # as if flushed already: close() does not flush again
            with contextlib.suppress(AttributeError):  # no spool before the first flush
                self._spool.close()
