"""The S3 API's HTTP side: an aiohttp application on its own port, over a master's state.

``dispatch`` authenticates the request (auth.py), finds its bucket and key (path-style
``/<bucket>/<key>``, or ``<bucket>.<--s3-domain>`` virtual-host style), and hands it to the
one operation its method and sub-resource name.  ``s3_errors`` turns every failure into
S3's XML error body, with the request id that ``x-amz-request-id`` carries.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import unquote

from aiohttp import web

from ..config import MasterConfig
from ..httputil import Handler, HTTPProblem, failure
from ..master.state import STATE
from ..metrics import Metrics
from ..server import new_app
from . import buckets, listing, multipart, objects, xml
from .auth import authenticate
from .call import Call, new_request_id
from .errors import S3Error

log = logging.getLogger("kittenfs.s3")

Operation = Callable[[Call], Awaitable[web.StreamResponse]]
REQUEST_ID = "kittenfs.s3.request_id"

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


def build_s3_app(config: MasterConfig, metrics: Metrics) -> web.Application:
    """Return the S3 application; the master's lifecycle gives it the master's state."""
    app = new_app(metrics, config.limits, s3_errors)
    app[DOMAIN] = config.s3_domain or ""
    app.router.add_route("*", r"/{tail:[\s\S]*}", dispatch)
    return app


DOMAIN = web.AppKey("s3_domain", str)


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
    response.headers["x-amz-request-id"] = request_id
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
    """Route an S3 request to its operation."""
    state = request.app[STATE]
    verified = await authenticate(request, state.access)
    bucket, key = _address(request)
    call = Call(request, state, verified, bucket, key, request[REQUEST_ID])
    return await _operation(request, bucket, key)(call)


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
