"""A lean HTTP/1.1 front door: the hottest routes answered on a protocol of their own, every
other request handed, with its connection, to aiohttp.

Why: aiohttp's request machinery (the request and response objects, the middlewares, a task
per request) costs about 100-140 µs of CPU per request on the project's 2-core VM, against
about 20 µs for a plain asyncio protocol with httptools (llhttp) parsing the head
(docs/performance.md, "Is the HTTP layer the floor?").  A cached small GET costs the master
little else, and a DELETE not much more, so those routes are answered here.

The contract with the process's application (``Answer``): given a request's head
(``Head``), return a ``Reply``, or None to have aiohttp answer the request instead.  A
request is only offered here when it is HTTP/1.1 with no body (no Content-Length above 0, no
Transfer-Encoding), no ``Expect`` and no ``Upgrade``; everything else, and anything the
parser rejects, goes to aiohttp with the bytes received so far, so aiohttp's limits and
errors apply to it unchanged.  A connection handed over stays with aiohttp.

Limits kept here, as aiohttp's are (limits.py): a head must arrive whole within the header
timeout of its first byte (else 408), an idle connection is closed after the idle timeout,
and a client that does not read its answers is cut after the send timeout.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import unquote

import httptools
from aiohttp import web
from multidict import CIMultiDict, MultiDict, MultiDictProxy

from .config import Limits
from .httputil import HTTPProblem, Reply
from .limits import HEADER_LINE_MAX, HEADERS_MAX, late_head
from .logs import ACCESS, log_request
from .metrics import Metrics
from .requestid import HEADER, fresh, request_id

log = logging.getLogger("kittenfs.http")

#: Most bytes of a head kept while it is incomplete (beyond: aiohttp rejects it).
HEAD_MAX = HEADER_LINE_MAX * HEADERS_MAX
#: Bytes of pipelined requests kept while one is answered, before reading pauses.
PIPELINE_MAX = 256 * 1024
#: The query of every request the front takes (one with a query goes to aiohttp).
NO_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())


@dataclass(slots=True)
class Head:
    """A request's head, with what access control and routing read of one."""

    method: str
    raw_path: str
    headers: CIMultiDict[str]
    remote: str | None
    query: MultiDictProxy[str] = field(default_factory=lambda: NO_QUERY)

    @property
    def path(self) -> str:
        """The path, percent-decoded (as aiohttp's ``request.path``)."""
        return unquote(self.raw_path)


#: What a process answers on the front: a Reply, or None for aiohttp to answer.
Answer = Callable[[Head], Awaitable[Reply | None]]


class Front:
    """Builds the connections of one listening socket and knows them, to close them."""

    def __init__(
        self, answer: Answer, fallback: web.Server, limits: Limits, metrics: Metrics
    ) -> None:
        self.answer = answer
        self.fallback = fallback
        self.limits = limits
        self.metrics = metrics
        self.connections: set[FrontConnection] = set()
        self.closing = False
        self._emptied = asyncio.Event()

    def __call__(self) -> "FrontConnection":
        return FrontConnection(self)

    def forget(self, connection: "FrontConnection") -> None:
        """Drop a connection that closed or went to aiohttp."""
        self.connections.discard(connection)
        if self.closing and not self.connections:
            self._emptied.set()

    async def shutdown(self, grace: float = 10.0) -> None:
        """Close idle connections now, and the others once their request is answered (or
        after ``grace`` seconds)."""
        self.closing = True
        if not self.connections:
            return
        for connection in list(self.connections):
            connection.close_when_idle()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._emptied.wait()
        for connection in list(self.connections):
            connection.abort()


class FrontConnection(asyncio.Protocol):
    """One client connection, until (unless) it is handed to aiohttp."""

    def __init__(self, front: Front) -> None:
        self._front = front
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None  # the client's address
        self._buffer = bytearray()
        self._parser = httptools.HttpRequestParser(self)
        self._busy = False  # a request is being answered
        self._task: asyncio.Future[None] | None = None  # that request's answer
        self._write_paused = False
        self._read_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = ""
        # The head being parsed (httptools' callbacks fill these).
        self._url = b""
        self._fields: list[tuple[bytes, bytes]] = []
        self._complete = False
        self._keep_alive = False

    # asyncio's protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, tuple) else None
        self._front.connections.add(self)
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self._front.forget(self)
        self._cancel_timer()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._busy or self._write_paused:
            if len(self._buffer) > PIPELINE_MAX and self._transport is not None:
                self._transport.pause_reading()
                self._read_paused = True
            return
        self._next()

    def eof_received(self) -> bool:
        return False  # close: a client that stopped sending sends no further request

    def pause_writing(self) -> None:
        self._write_paused = True
        self._arm("send", self._front.limits.send_timeout, self.abort)

    def resume_writing(self) -> None:
        self._write_paused = False
        self._cancel_timer()
        if not self._busy:
            self._next()

    # httptools' callbacks -----------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))

    def on_headers_complete(self) -> None:
        self._keep_alive = self._parser.should_keep_alive()  # reset once the message ends

    def on_message_complete(self) -> None:
        self._complete = True

    # the connection's life ----------------------------------------------------------------

    def close_when_idle(self) -> None:
        """Close now if no request is being answered, else once it is."""
        if not self._busy:
            self._close()

    def _close(self) -> None:
        """Close once what is written is sent, and take no further request."""
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._buffer.clear()

    def abort(self) -> None:
        """Drop the connection at once (a client that does not read, or shutdown)."""
        if self._transport is not None:
            self._transport.abort()

    def _next(self) -> None:
        """Take the next request in the buffer, or wait for one (under a timeout)."""
        transport = self._transport
        if transport is None or self._busy:
            return
        if self._front.closing:
            transport.close()
            return
        if self._read_paused and len(self._buffer) <= PIPELINE_MAX:
            transport.resume_reading()
            self._read_paused = False
        if not self._buffer:
            self._arm("idle", self._front.limits.idle_timeout, transport.close)
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or end > HEAD_MAX:
            if len(self._buffer) > HEAD_MAX:
                self._hand_over()  # aiohttp answers the over-long head
            elif self._timer_kind != "head":
                self._arm("head", self._front.limits.header_timeout, self._head_late)
            return
        head = self._parse(bytes(self._buffer[: end + 4]))
        if head is None:
            self._hand_over()
            return
        self._cancel_timer()
        self._busy = True
        self._task = asyncio.ensure_future(self._answer(head, end + 4, self._keep_alive))

    def _parse(self, raw: bytes) -> Head | None:
        """Return the head of a request this front may take, or None."""
        self._url, self._fields, self._complete = b"", [], False
        try:
            self._parser.feed_data(raw)
        except httptools.HttpParserError:
            return None
        if not self._complete or self._parser.get_http_version() != "1.1":
            return None  # a body follows (or an old client): aiohttp's
        if (
            len(self._url) > HEADER_LINE_MAX
            or len(self._fields) > HEADERS_MAX
            or any(len(name) + len(value) + 2 > HEADER_LINE_MAX for name, value in self._fields)
        ):
            return None  # aiohttp refuses it, as it refuses every head past its limits
        headers: CIMultiDict[str] = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in self._fields
        )
        if "Expect" in headers or "Upgrade" in headers or b"?" in self._url:
            return None
        method = self._parser.get_method().decode("ascii")
        return Head(method, self._url.decode("latin-1"), headers, self._remote)

    async def _answer(self, head: Head, size: int, keep_alive: bool) -> None:
        started = time.perf_counter()
        try:
            reply = await self._front.answer(head)
        except Exception as exc:  # the last line of defence, as httputil.json_errors
            log.exception("internal error on %s %s", head.method, head.path)
            reply = HTTPProblem(500, "internal_error", f"{type(exc).__name__}: {exc}").reply()
        transport = self._transport
        if reply is None:
            self._busy = False
            if transport is not None:
                self._hand_over()
            return
        del self._buffer[:size]
        sent = len(reply.body)
        keep_alive = keep_alive and not self._front.closing
        rid = request_id(head.headers.get(HEADER))
        if transport is not None:
            transport.write(_encode(reply, head.method, keep_alive, rid))
        if not keep_alive:  # nothing after this request is read, let alone answered
            self._close()
        seconds = time.perf_counter() - started
        self._front.metrics.record(
            self._front.metrics.classify(head.path), head.method, reply.status, seconds, 0, sent
        )
        if ACCESS.isEnabledFor(logging.INFO):
            log_request(head.remote, head.method, head.raw_path, reply.status, sent, seconds, rid)
        self._busy = False
        if not self._write_paused:
            self._next()

    def _hand_over(self) -> None:
        """Give the connection, and the bytes not yet answered, to aiohttp."""
        transport = self._transport
        assert transport is not None
        self._cancel_timer()
        self._front.forget(self)
        self._transport = None
        protocol = self._front.fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._read_paused:
            transport.resume_reading()
        if self._buffer:
            protocol.data_received(bytes(self._buffer))
            self._buffer.clear()

    def _head_late(self) -> None:
        self._timer = None
        if self._transport is None or self._busy:
            return
        problem = late_head(self._front.limits.header_timeout)
        self._transport.write(_encode(problem.reply(), "GET", False, fresh()))
        self._close()

    def _arm(self, kind: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer_kind = kind
        self._timer = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_kind = ""


_REASONS = {status.value: status.phrase for status in HTTPStatus}
#: Statuses that never carry a body or a Content-Length of one (RFC 9110, 8.6 and 15).
_BODILESS = (204, 304)


def _encode(reply: Reply, method: str, keep_alive: bool, rid: str) -> bytes:
    """Return ``reply`` as the bytes of an HTTP/1.1 response to ``method``, whose request
    has the id ``rid`` (requestid.py)."""
    lines = [
        f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}",
        f"Date: {_date()}",
        f"{HEADER}: {rid}",
    ]
    lines.extend(f"{name}: {value}" for name, value in reply.headers.items())
    if reply.status not in _BODILESS and "Content-Length" not in reply.headers:
        length = reply.length if reply.length is not None else len(reply.body)
        lines.append(f"Content-Length: {length}")
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if method == "HEAD" or reply.status in _BODILESS:
        return head
    return head + reply.body


_dates: list[tuple[int, str]] = [(0, "")]


def _date() -> str:
    """The Date header's value, made once a second."""
    now = int(time.time())
    if _dates[0][0] != now:
        _dates[0] = (now, formatdate(now, usegmt=True))
    return _dates[0][1]
