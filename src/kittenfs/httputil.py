"""HTTP helpers shared by the master and the workers: JSON errors and byte ranges."""

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import aiohttp.http
from aiohttp import web

from . import errors
from .keys import InvalidKey, check_key

log = logging.getLogger("kittenfs.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestHead(Protocol):
    """What access control reads of a request: aiohttp's, or the front's head (front.Head)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def raw_path(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def query(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer (status, headers, body), made without aiohttp: the hot routes answer
    with one on the front (front.py), and aiohttp's handlers turn it into a response."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: The Content-Length of a bodiless answer to HEAD (the value's length), if any.
    length: int | None = None

    def response(self) -> web.Response:
        """Return this answer as aiohttp's response."""
        if self.length is not None:
            return head_response(self.status, self.headers, self.length)
        return web.Response(status=self.status, headers=self.headers, body=self.body or None)


class HTTPProblem(Exception):
    """Raised by request logic to end a request with a JSON error response (and, once
    ``close`` is set, its connection: for refusals under load, whose clients may never
    read)."""

    def __init__(self, status: int, error: str, detail: str = "", **headers: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.error, self.detail, self.headers = status, error, detail, headers
        self.close = False

    def response(self) -> web.Response:
        """Return the JSON error response this problem stands for."""
        response = self.reply().response()
        if self.close:
            response.force_close()
        return response

    def reply(self) -> Reply:
        """Return the JSON body every 4xx/5xx carries (``{"error": ..., "detail": ...}``)
        with this problem's status and headers, as a Reply (for aiohttp or the front)."""
        body = json.dumps({"error": self.error, "detail": self.detail}).encode()
        return Reply(
            self.status, {**self.headers, "Content-Type": "application/json; charset=utf-8"}, body
        )


#: The one place a domain error (errors.StoreError) becomes an HTTP status: the most
#: specific class listed for an error's type wins.
STATUS: dict[type[errors.StoreError], int] = {
    errors.StoreError: 500,
    errors.NotFound: 404,
    errors.StateConflict: 409,
    errors.PreconditionFailed: 412,
    errors.InvalidRequest: 400,
    errors.TooLarge: 413,
    errors.NoGoodReplica: 502,
    errors.ReplicaUnavailable: 503,
    errors.IndexUnavailable: 503,
    errors.WriteAbandoned: 503,
}


def problem_for(error: errors.StoreError) -> HTTPProblem:
    """Return the HTTP problem a domain error is answered with."""
    status = next(STATUS[cls] for cls in type(error).__mro__ if cls in STATUS)
    return HTTPProblem(status, error.code, error.detail)


class ResponseAborted(Exception):
    """A response failed after its headers were sent: the connection is cut, not answered."""


#: Responses cut so far.  A cut leaves reference cycles (the exceptions' tracebacks and the
#: request's objects), and with them the connection's buffers, until the garbage collector
#: runs: server.give_back_free_memory runs it when this count moves.
CUT = [0]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error response; an unexpected one is logged once."""
    try:
        return await handler(request)
    except Exception as exc:  # the last line of defence must catch everything
        return failure(request, exc).response()


def failure(request: web.Request, exc: Exception) -> HTTPProblem:
    """Return the problem a request that raised ``exc`` is answered with (logged when
    unexpected).  A response cut after its headers (ResponseAborted) drops the connection
    instead; an aiohttp redirect or other non-error is raised again."""
    if isinstance(exc, HTTPProblem):
        return exc
    if isinstance(exc, errors.StoreError):
        return problem_for(exc)
    if isinstance(exc, ResponseAborted):
        log.warning("%s %s cut off: %s", request.method, request.path, exc)
        CUT[0] += 1
        if request.transport is not None:
            request.transport.close()
        raise ConnectionResetError(str(exc)) from None  # aiohttp drops the connection quietly
    if isinstance(
        exc, ConnectionResetError | aiohttp.ClientPayloadError | aiohttp.http.HttpProcessingError
    ):
        log.info("%s %s: the client went away (%s)", request.method, request.path, exc)
        return HTTPProblem(400, "incomplete_request", str(exc))
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return HTTPProblem(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or "")
    log.exception("internal error on %s %s", request.method, request.path, exc_info=exc)
    return HTTPProblem(500, "internal_error", f"{type(exc).__name__}: {exc}")


def range_asked(headers: Mapping[str, str]) -> str | None:
    """Return the Range header a request asks to be honoured, or None.

    RFC 9110 (14.2) has a server ignore a Range whose unit it does not know, and an empty
    one asks for nothing: both are served whole.  A ``bytes`` range, or one too garbled to
    have a unit, goes on to :func:`parse_range` (and may get 416).
    """
    header = headers.get("Range")
    if header is None or not header.strip():
        return None
    unit, equals, _ = header.partition("=")
    if equals and unit.strip() and unit.strip().lower() != "bytes":
        return None
    return header


def parse_range(header: str, size: int) -> tuple[int, int]:
    """Return the inclusive span ``(first, last)`` a single-range header asks of ``size`` bytes.

    Raise HTTPProblem 416 when the header is malformed, asks for several ranges, or cannot
    be satisfied; the 416 carries ``Content-Range: bytes */size`` as RFC 9110 asks.
    """
    unsatisfiable = {"Content-Range": f"bytes */{size}"}
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        raise HTTPProblem(
            416, "bad_range", f"only one 'bytes=' range is supported: {header!r}", **unsatisfiable
        )
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash or not _digits(first_text + last_text):
        raise HTTPProblem(416, "bad_range", f"malformed range {header!r}", **unsatisfiable)
    if not first_text:
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise HTTPProblem(
                416, "range_not_satisfiable", f"{header!r} of {size} bytes", **unsatisfiable
            )
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first > last or first >= size:
        raise HTTPProblem(
            416, "range_not_satisfiable", f"{header!r} of {size} bytes", **unsatisfiable
        )
    return first, min(last, size - 1)


def head_response(status: int, headers: dict[str, str], length: int) -> web.Response:
    """Return a bodiless response (for HEAD) that still announces the value's length."""
    return web.Response(status=status, headers={**headers, "Content-Length": str(length)})


def _digits(text: str) -> bool:
    """Return True for a plain decimal number short enough to be a byte offset."""
    return 0 < len(text) <= 40 and text.isascii() and text.isdigit()


def etag(md5: str) -> str:
    """Return the ETag of a value with this MD5 hex digest."""
    return f'"{md5}"'


def etag_matches(if_none_match: str | None, md5: str) -> bool:
    """Return True if an If-None-Match header matches a value with this MD5 (so 304 applies)."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag(md5) in tags


def parse_json(raw: bytes | str) -> Any:
    """Return the JSON value of ``raw``; raise ValueError for anything that is not strict
    JSON: bad syntax, NaN and infinities (which Python's parser accepts), and nesting too
    deep to parse (which Python's parser reports as RecursionError)."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def finite_number(value: object) -> float | None:
    """Return a JSON number as a float if it is finite (not a bool, NaN, an infinity, or an
    integer too large for a float); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def json_key(body: Mapping[str, Any]) -> str:
    """Return the key a JSON request body names in ``key``; 400 bad_option if it is not a
    string, bad_key if it is no valid key."""
    key = body.get("key")
    if not isinstance(key, str):
        raise HTTPProblem(400, "bad_option", "key must be a string")
    try:
        check_key(key)
    except InvalidKey as exc:
        raise HTTPProblem(400, "bad_key", str(exc)) from None
    return key


def json_object(raw: bytes) -> dict[str, Any]:
    """Return a request body that must be a JSON object; 400 bad_json otherwise."""
    try:
        body = parse_json(raw)
    except ValueError as exc:
        raise HTTPProblem(400, "bad_json", f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HTTPProblem(400, "bad_json", "the body must be a JSON object")
    return body
