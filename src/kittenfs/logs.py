"""A process's log lines: text for people, or one JSON object a line (``--log-format
json``) for a log shipper; and the one access line of a request, whether aiohttp or the
front (front.py) answered it.

A JSON line has ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger`` and
``message``; an access line adds ``method``, ``path``, ``status``, ``bytes``, ``duration``
(seconds), ``remote`` and ``request_id``; a logged exception adds ``exception`` (its
traceback).  json.dumps escapes every newline and control character, so a line is always
one object, whatever a client put in its path.
"""

import json
import logging
from datetime import UTC, datetime

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from .metrics import sent_bytes
from .requestid import HEADER

#: Access lines (one per request when ``--verbose``), aiohttp's and the front's.
ACCESS = logging.getLogger("aiohttp.access")
#: How a text line looks.
TEXT = "%(asctime)s %(name)s %(levelname)s %(message)s"
#: The fields of a request an access line carries, in JSON as themselves.
REQUEST_FIELDS = ("method", "path", "status", "bytes", "duration", "remote", "request_id")


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object (see the module's docstring for its fields)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        line.update((name, fields[name]) for name in REQUEST_FIELDS if name in fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def setup_logging(verbose: bool, log_format: str = "text") -> None:
    """Log one line per start, stop and error (and per request when ``verbose``) to stderr,
    as text or as JSON (``log_format``: config.FORMATS); Python's warnings go there too."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)
    ACCESS.setLevel(logging.INFO if verbose else logging.WARNING)


def log_request(
    remote: str | None,
    method: str,
    path: str,
    status: int,
    sent: int,
    seconds: float,
    request_id: str,
) -> None:
    """Write a request's access line (callers on a hot path check ACCESS first).  ``path``
    is the raw one, as the request line had it (percent-encoded, with its query): a decoded
    path could hold a line break and forge a second line of a text log."""
    ACCESS.info(
        '%s "%s %s" %d %d %.2fms %s',
        remote or "-",
        method,
        path,
        status,
        sent,
        seconds * 1000,
        request_id,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "bytes": sent,
            "duration": round(seconds, 6),
            "remote": remote,
            "request_id": request_id,
        },
    )


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access lines, written by :func:`log_request` as the front's are."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        log_request(
            request.remote,
            request.method,
            request.raw_path,
            response.status,
            sent_bytes(response),
            time,
            response.headers.get(HEADER, "-"),
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
