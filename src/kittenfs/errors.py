"""Exceptions of kittenFS: the client's, one per way a request can fail, and the servers'.

The client raises::

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

The master's and workers' domain code raises (and the HTTP layer, ``httputil.STATUS``, maps
to a status: the statuses on the right are that map, written down nowhere else)::

    StoreError                  ``code`` (the JSON ``error``) and ``detail``
    ├── NotFound                404: no such key, job or worker
    ├── StateConflict           409: a job runs already; a worker is up, down or taken
    ├── PreconditionFailed      412: If-None-Match matches the live value
    ├── InvalidRequest          400: the body ended before its Content-Length
    │   ├── TooLarge            413: the value is over --max-value-bytes
    │   └── MetadataTooLarge    400: the value's metadata is over records.MAX_META_BYTES
    ├── NoGoodReplica           502: no replica could serve the value
    ├── IndexUnavailable        503: the index's engine cannot be reached
    ├── WriteAbandoned          503: another master took this one for dead mid-write
    └── ReplicaUnavailable      503: the replicas a request needs cannot be had
        └── NotEnoughWorkers    503: fewer workers are up than a write needs

    ReplicaError                a worker failed one blob operation (the replica transport);
                                its callers turn it into a StoreError or retry elsewhere
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


class StoreError(Exception):
    """A request the store cannot carry out; ``code`` names why, ``detail`` says it to a person."""

    code = "store_error"

    def __init__(self, detail: str = "", code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class NotFound(StoreError):
    """The key, job or worker asked for does not exist."""

    code = "not_found"


class StateConflict(StoreError):
    """The request conflicts with what the cluster is doing or how it is now."""

    code = "conflict"


class PreconditionFailed(StoreError):
    """A conditional write found its condition false (If-None-Match matched)."""

    code = "key_exists"


class InvalidRequest(StoreError):
    """The request's body is not what it announced."""

    code = "bad_request"


class MetadataTooLarge(InvalidRequest):
    """The value's metadata is larger than a blob can carry (records.MAX_META_BYTES)."""

    code = "metadata_too_large"


class TooLarge(InvalidRequest):
    """The value is larger than this master accepts."""

    code = "value_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"values are limited to {limit} bytes")


class NoGoodReplica(StoreError):
    """Replicas are up, but none could serve the value."""

    code = "no_good_replica"


class ReplicaUnavailable(StoreError):
    """The replicas a request needs are down, failed or disagree."""

    code = "replica_failed"


class NotEnoughWorkers(ReplicaUnavailable):
    """Fewer workers are up than the replicas a write needs."""

    code = "not_enough_workers"

    def __init__(self, needed: int, up: int) -> None:
        super().__init__(f"{needed} replicas are needed and {up} workers are up")


class IndexUnavailable(StoreError):
    """The index's engine (a PostgreSQL server) cannot be reached or did not answer in
    time; a commit cut this way may have landed, so a write that meets it is failed or
    unknown, never acknowledged."""

    code = "index_unavailable"


class WriteAbandoned(StoreError):
    """The write's record in flight was turned into garbage before it could commit: its
    master was taken for dead by another (it stopped for too long).  Nothing was written."""

    code = "write_abandoned"


class ReplicaError(Exception):
    """A worker failed an operation on a blob; the message names the worker and the cause.

    ``unreachable`` is True when the worker could not be talked to at all (refused, reset,
    timed out), as opposed to answering with an error; ``status`` is the worker's error
    status when it answered one (0 otherwise).
    """

    def __init__(self, message: str, unreachable: bool = False, status: int = 0) -> None:
        super().__init__(message)
        self.unreachable = unreachable
        self.status = status
