"""Limits that keep one client, or many, from exhausting a kittenFS process.

aiohttp bounds header sizes but not the time a request may take to arrive: a client that
sends its head a byte a minute (slowloris), or stops halfway through a body, holds a
connection, and for a PUT the key's lock, for as long as it likes.  This module bounds
those times, the number of uploads in progress, and answers the HTTP parser's own
rejections in JSON like every other error.

Documented in docs/api.md ("Limits"); every limit is a setting of ``config.Limits``, with a
flag on ``master`` and ``worker``.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .config import Limits
from .httputil import Handler, HTTPProblem
from .logs import AccessLogger

#: Longest request line or header line, in bytes (a longer one gets 400).
HEADER_LINE_MAX = 8190
#: Most header fields in one request (more get 400).
HEADERS_MAX = 128
#: Only these methods count as uploads; paths under ``/_`` (registration, heartbeats,
#: admin) never do, so a flood of values cannot starve a worker's heartbeat.
UPLOAD_METHODS = frozenset({"PUT", "POST"})
#: Reserved routes whose bodies are uploads all the same (the others are the cluster's own
#: small messages and admin calls): the parts of an upload in parts (master/uploads.py).
COUNTED_ROUTES = ("/_uploads",)

T = TypeVar("T")

log = logging.getLogger("kittenfs.http")


LIMITS = web.AppKey("limits", Limits)


def upload_limit(limits: Limits) -> Any:
    """Return a middleware that refuses an upload past the overall or per-client limit.

    It answers before the body is read, so a refused client has sent nothing it must send
    again but the head; Retry-After tells it when to try.
    """
    per_client: Counter[str] = Counter()
    total = 0

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal total
        if request.method not in UPLOAD_METHODS or (
            request.path.startswith("/_") and not request.path.startswith(COUNTED_ROUTES)
        ):
            return await handler(request)
        client = request.remote or "?"
        if total >= limits.uploads:
            raise HTTPProblem(
                503,
                "too_many_uploads",
                f"{total} uploads in progress (--max-uploads)",
                **{"Retry-After": "1"},
            )
        if per_client[client] >= limits.uploads_per_client:
            raise HTTPProblem(
                429,
                "too_many_uploads_from_client",
                f"{per_client[client]} uploads in progress from {client} "
                "(--max-uploads-per-client)",
                **{"Retry-After": "1"},
            )
        total += 1
        per_client[client] += 1
        try:
            return await handler(request)
        finally:
            total -= 1
            per_client[client] -= 1
            if not per_client[client]:
                del per_client[client]

    return middleware


async def body_chunks(request: web.Request, size: int) -> AsyncIterator[bytes]:
    """Yield a request's body in pieces of up to ``size`` bytes, each under the body timeout."""
    while chunk := await paced(request, request.content.read(size)):
        yield chunk


async def paced(request: web.Request, read: Awaitable[T]) -> T:
    """Return what one read of a request's body gives; raise 408 if it takes longer than the
    body timeout, so a client that stalls mid-body cannot hold a write (and its key's lock)
    for ever."""
    timeout = request.app[LIMITS].body_timeout
    try:
        async with asyncio.timeout(timeout):
            return await read
    except TimeoutError:
        raise HTTPProblem(
            408, "body_timeout", f"no body data for {timeout:g} s (--body-timeout)"
        ) from None


async def read_body(request: web.Request) -> bytes:
    """Return a whole (already size-checked) request body, under the body timeout."""
    return b"".join([chunk async for chunk in body_chunks(request, 1 << 16)])


def late_head(timeout: float) -> HTTPProblem:
    """The 408 for a head that did not arrive whole within the header timeout (answered by
    aiohttp's connections here, and by the master's front)."""
    return HTTPProblem(
        408,
        "header_timeout",
        f"the request head did not arrive within {timeout:g} s (--header-timeout)",
    )


class Runner(web.AppRunner):
    """An AppRunner whose connections enforce ``limits`` (see :class:`_Connection`)."""

    def __init__(self, app: web.Application, limits: Limits) -> None:
        super().__init__(
            app,
            handle_signals=False,
            keepalive_timeout=limits.idle_timeout,
            max_line_size=HEADER_LINE_MAX,
            max_field_size=HEADER_LINE_MAX,
            max_headers=HEADERS_MAX,
            access_log_class=AccessLogger,
        )
        self.limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _Server(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            header_timeout=self.limits.header_timeout,
            **plain._kwargs,
        )  # the handler options AppRunner gathered


class _Server(web.Server):
    """aiohttp's server, building :class:`_Connection` protocols instead of its own."""

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout

    def __call__(self) -> RequestHandler:
        return _Connection(self, self.header_timeout, loop=self._loop, **self._kwargs)


class _Connection(RequestHandler):
    """One HTTP connection: a head must arrive whole within the header timeout of its first
    byte, and the parser's rejections (bad request line, header too long, ...) are JSON."""

    def __init__(self, manager: web.Server, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._awaiting_head():
            self._cancel_head_timer()
        elif self._head_timer is None and data:
            self._head_timer = self._loop.call_later(self._header_timeout, self._head_late)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        """True while the connection waits between requests for the next head to complete
        (not while a request is handled or its unread body is drained)."""
        return self._waiter is not None and not self._waiter.done()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self._awaiting_head() or self.transport is None:
            return
        body = late_head(self._header_timeout).reply().body
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json"
            b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer a request the server could not handle (the parser's 400s among them) in
        JSON, logging one line for a client's error and a traceback only for our own."""
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:
            log.warning(
                "%d for a request from %s: %s",
                status,
                request.remote,
                message or exc or HTTPStatus(status).phrase,
            )
        if request.writer.output_size > 0:  # part of a response is out: only a cut is left
            raise ConnectionError("the response was already under way")
        phrase = HTTPStatus(status)
        response = web.json_response(
            {
                "error": phrase.phrase.lower().replace(" ", "_"),
                "detail": message or phrase.description,
            },
            status=status,
        )
        response.force_close()
        return response
