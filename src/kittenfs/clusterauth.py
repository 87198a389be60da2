"""Cluster membership on the wire: signing outgoing requests with the cluster secret (for
aiohttp sessions and httpx clients) and checking incoming ones.

A process without a cluster secret (a loopback-only cluster, docs/security.md) signs
nothing and accepts everything, as before the secret existed.
"""

import time
from collections.abc import Generator

import httpx
from aiohttp import ClientHandlerType, ClientMiddlewareType, ClientRequest, ClientResponse

from .httputil import HTTPProblem, RequestHead
from .signing import HEADER, ClusterKey


def session_middlewares(key: ClusterKey | None) -> tuple[ClientMiddlewareType, ...]:
    """Return the middlewares of an aiohttp session whose every request is signed with
    ``key`` (none when there is no key)."""
    if key is None:
        return ()

    async def sign(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        request.headers[HEADER] = key.sign_request(
            request.method, request.url.raw_path_qs, time.time()
        )
        return await handler(request)

    return (sign,)


class HttpxClusterAuth(httpx.Auth):
    """httpx authentication that signs every request with the cluster secret (for tools
    that talk to workers directly: ``kittenfs rebuild``, the tests)."""

    def __init__(self, key: ClusterKey) -> None:
        self.key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        target = request.url.raw_path.decode("ascii")
        request.headers[HEADER] = self.key.sign_request(request.method, target, time.time())
        yield request


def is_member(request: RequestHead, key: ClusterKey | None) -> bool:
    """Return True if ``request`` is signed by a member of the cluster (always, without a
    cluster secret)."""
    return key is None or key.check_request(
        request.method, request.raw_path, request.headers.get(HEADER), time.time()
    )


def require_member(request: RequestHead, key: ClusterKey | None) -> None:
    """Raise 401 unless ``request`` is signed by a member of the cluster."""
    if not is_member(request, key):
        raise HTTPProblem(
            401,
            "cluster_auth_required",
            f"only members of this cluster may call {request.path}: sign the "
            f"request with the cluster secret ({HEADER})",
            **{"WWW-Authenticate": 'KittenFS-Cluster realm="kittenfs"'},
        )
