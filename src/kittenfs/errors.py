"""Exceptions the client raises, one per way a request can fail.

    KittenError
    ├── KeyNotFound        404: no such key
    ├── Conflict           412: If-None-Match: * and the key exists
    ├── AccessDenied       401: no valid credential; 403: one that does not allow this
    ├── BadRequest         400, 405, 416: the server refused the request as malformed
    │   └── ValueTooLarge  413: the value is over the server's limit
    ├── CorruptValue       the bytes received do not match the value's MD5
    └── ServerError        5xx, or no answer at all
        └── Unavailable    503: too few workers up, or a replica failed

Each carries the HTTP ``status`` (0 when there was no answer) and the server's ``detail``.
"""


class KittenError(Exception):
    """A kittenFS request failed."""

    def __init__(self, message: str, status: int = 0, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class KeyNotFound(KittenError, KeyError):
    """The key does not exist (or is unlinked)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Conflict(KittenError):
    """A create-only write found the key already there."""


class AccessDenied(KittenError):
    """The request carried no valid credential (status 401), or one that does not allow it
    (403): the wrong role, outside its prefix, or a link that has expired."""


class BadRequest(KittenError):
    """The server refused the request as malformed."""


class ValueTooLarge(BadRequest):
    """The value is larger than the server accepts."""


class CorruptValue(KittenError):
    """The bytes received do not match the value's checksum."""


class ServerError(KittenError):
    """The server failed, or could not be reached."""


class Unavailable(ServerError):
    """Too few workers are up to serve the request right now."""


def error_for_status(status: int, message: str, detail: str = "") -> KittenError:
    """Return the exception that stands for an HTTP error status."""
    cls: type[KittenError]
    if status == 404:
        cls = KeyNotFound
    elif status == 412:
        cls = Conflict
    elif status in (401, 403):
        cls = AccessDenied
    elif status == 413:
        cls = ValueTooLarge
    elif status == 503:
        cls = Unavailable
    elif status >= 500:
        cls = ServerError
    else:
        cls = BadRequest
    return cls(message, status, detail)
