"""The S3 API's HTTP side: an aiohttp application on its own port, over a master's state
(or, in an S3 gateway, over its view of a master: gateway.py).

``dispatch`` finds the request's bucket and key (path-style ``/<bucket>/<key>``, or
``<bucket>.<--s3-domain>`` virtual-host style) and the one operation its method and
sub-resource name, authenticates it (auth.py), and runs the operation.  A gateway runs only
the operations that read (``READS``) and forwards the others to its master.  ``s3_errors``
turns every failure into S3's XML error body, with the request id that
``x-amz-request-id`` carries.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import unquote

from aiohttp import web

from ..config import Limits
from ..httputil import Handler, HTTPProblem, failure
from ..metrics import Metrics
from ..server import new_app
from . import buckets, listing, multipart, objects, xml
from .auth import Keys, authenticate
from .call import Backing, Call, new_request_id
from .errors import S3Error

log = logging.getLogger("kittenfs.s3")

Operation = Callable[[Call], Awaitable[web.StreamResponse]]
#: How a gateway hands a request that writes to its master.
Forward = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = "kittenfs.s3.request_id"
#: What the operations run over, and where signatures are checked.
BACKING: web.AppKey[Backing] = web.AppKey("s3_backing")
KEYS: web.AppKey[Keys] = web.AppKey("s3_keys")
FORWARD: web.AppKey[Forward | None] = web.AppKey("s3_forward")
DOMAIN = web.AppKey("s3_domain", str)

#: Sub-resources of features kittenFS does not have: answered NotImplemented, never with a
#: wrong success.
UNSUPPORTED = frozenset(
    {
        "accelerate", "acl", "analytics", "attributes", "cors", "encryption",
        "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "logging", "metrics",
        "notification", "object-lock", "ownershipControls", "policy", "policyStatus",
        "publicAccessBlock", "replication", "requestPayment", "restore", "retention",
        "select", "tagging", "torrent", "website",
    }
)  # fmt: skip

#: The S3 error code of each HTTP status the rest of the master may answer with.
_CODES = {
    400: "InvalidRequest",
    401: "AccessDenied",
    403: "AccessDenied",
    404: "NoSuchKey",
    408: "RequestTimeout",
    409: "InvalidRequest",
    412: "PreconditionFailed",
    413: "EntityTooLarge",
    416: "InvalidRange",
    429: "SlowDown",
    501: "NotImplemented",
    503: "ServiceUnavailable",
}


def build_s3_app(
    limits: Limits,
    domain: str | None,
    metrics: Metrics,
    backing: Backing,
    keys: Keys,
    forward: Forward | None = None,
) -> web.Application:
    """Return the S3 application over ``backing``, checking signatures with ``keys``; with
    ``forward`` (a gateway), only the operations that read run here."""
    app = new_app(metrics, limits, s3_errors)
    app[DOMAIN] = domain or ""
    app[BACKING] = backing
    app[KEYS] = keys
    app[FORWARD] = forward
    app.router.add_route("*", r"/{tail:[\s\S]*}", dispatch)
    return app


@web.middleware
async def s3_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure with S3's XML error document; tag every answer with its id."""
    request_id = new_request_id()
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except S3Error as exc:
        response = error_response(request, exc, request_id)
    except Exception as exc:  # the master's own errors, mapped to S3's codes
        problem = failure(request, exc)
        response = error_response(request, _from_problem(problem), request_id)
    response.headers.setdefault("x-amz-request-id", request_id)  # a forwarded one has its own
    return response


def _from_problem(problem: HTTPProblem) -> S3Error:
    code = _CODES.get(
        problem.status, "InternalError" if problem.status >= 500 else "InvalidRequest"
    )
    return S3Error(code, problem.detail or problem.error)


def error_response(request: web.Request, error: S3Error, request_id: str) -> web.Response:
    """Return the response of a failed request: S3's XML error document (no body for HEAD
    or a 304)."""
    status = error.status
    if request.method == "HEAD" or status == 304:
        return web.Response(status=status)
    fields = xml.elements(
        Code=error.code, Message=error.message, Resource=request.path, RequestId=request_id
    ) + "".join(xml.element(name, value) for name, value in error.fields.items())
    body = f"{xml.DECLARATION}<Error>{fields}</Error>".encode()
    return web.Response(status=status, body=body, content_type="application/xml")


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route an S3 request to its operation (or, in a gateway, forward it if it writes)."""
    bucket, key = _address(request)
    operation = _operation(request, bucket, key)
    forward = request.app[FORWARD]
    if forward is not None and operation not in READS:
        return await forward(request)
    verified = await authenticate(request, request.app[KEYS])
    call = Call(request, request.app[BACKING], verified, bucket, key, request[REQUEST_ID])
    return await operation(call)


def _address(request: web.Request) -> tuple[str, str]:
    """Return the bucket and object name a request addresses ("" for none)."""
    path = unquote(request.raw_path.split("?", 1)[0])
    domain = request.app[DOMAIN]
    host = (request.host or "").rsplit(":", 1)[0].lower()
    if domain and host.endswith("." + domain):
        return host[: -len(domain) - 1], path[1:]
    bucket, _, key = path[1:].partition("/")
    return bucket, key


def _operation(request: web.Request, bucket: str, key: str) -> Operation:
    method = request.method
    query = request.query
    unsupported = UNSUPPORTED.intersection(query)
    if unsupported:
        return _not_implemented(f"the {sorted(unsupported)[0]} sub-resource is not supported")
    if not bucket:
        if method in ("GET", "HEAD"):
            return buckets.list_buckets
        return _not_allowed
    if not key:
        return _bucket_operation(method, query)
    if "uploads" in query:
        return multipart.create if method == "POST" else _not_allowed
    if "uploadId" in query:
        upload_operations: dict[str, Operation] = {
            "PUT": multipart.upload_part,
            "POST": multipart.complete,
            "DELETE": multipart.abort,
            "GET": multipart.list_parts,
        }
        return upload_operations.get(method, _not_allowed)
    if "partNumber" in query and method not in ("GET", "HEAD"):
        return _not_allowed
    if "versionId" in query and query["versionId"] != "null":
        return _no_such_version
    operations: dict[str, Operation] = {
        "PUT": objects.put_object,
        "GET": objects.get_object,
        "HEAD": objects.get_object,
        "DELETE": objects.delete_object,
    }
    return operations.get(method, _not_allowed)


def _bucket_operation(method: str, query: Mapping[str, str]) -> Operation:
    if method == "GET":
        if "location" in query:
            return buckets.bucket_location
        if "versioning" in query:
            return _versioning
        if "uploads" in query:
            return multipart.list_uploads
        if "versions" in query:
            return listing.list_object_versions
        if query.get("list-type") == "2":
            return listing.list_objects_v2
        return listing.list_objects
    if method == "PUT":
        if "versioning" in query:
            return _not_implemented("versioning is not supported")
        return buckets.create_bucket
    if method == "HEAD":
        return buckets.head_bucket
    if method == "DELETE":
        return buckets.delete_bucket
    if method == "POST" and "delete" in query:
        return objects.delete_objects
    return _not_allowed


def _not_implemented(message: str) -> Operation:
    async def operation(call: Call) -> web.StreamResponse:
        raise S3Error("NotImplemented", message)

    return operation


async def _not_allowed(call: Call) -> web.StreamResponse:
    raise S3Error("MethodNotAllowed", "the specified method is not allowed against this resource")


async def _no_such_version(call: Call) -> web.StreamResponse:
    raise S3Error("NoSuchVersion", "versioning is off: the only version is null")


async def _versioning(call: Call) -> web.StreamResponse:
    """GET /<bucket>?versioning: never enabled."""
    await call.existing_bucket()
    return web.Response(
        body=xml.document("VersioningConfiguration"), content_type="application/xml"
    )


#: The operations that only read: an S3 gateway runs these itself.
READS: frozenset[Operation] = frozenset(
    {
        objects.get_object,
        listing.list_objects,
        listing.list_objects_v2,
        listing.list_object_versions,
        buckets.list_buckets,
        buckets.head_bucket,
        buckets.bucket_location,
        multipart.list_parts,
        multipart.list_uploads,
        _versioning,
    }
)
