"""The master's side of the S3 gateway link (``kittenfs s3``, s3/gateway.py).

A gateway answers S3 reads itself, streaming bytes from the workers, and forwards every
other S3 request to this master's S3 port.  For its reads it asks the master what only the
master knows: the index's records, and the key that checks a request's signature.  Every
route here is for members of the cluster only (signed with the cluster secret), like the
worker link: a gateway is trusted as a worker is.

- ``GET /_gateway/hello``: whether auth is on, what anonymous callers may do, and where
  this master serves S3.
- ``GET /_gateway/records?prefix=P&start=S&limit=N``: live records in key order, in
  their stored form (records.encode), and the key to start the next page from.
- ``GET /_gateway/record?key=K``: one live record, or 404.
- ``POST /_gateway/signing-key {access_key, date, region, service}``: the SigV4 signing
  key of a credential for that one day, region and service, with its role and prefix.  A
  gateway never learns a secret: a signing key is good for one day's scope only.
"""

from collections.abc import AsyncIterator

from aiohttp import web

from ..httputil import HTTPProblem, json_object
from ..records import IndexRecord, encode
from ..s3 import sigv4
from ..s3.auth import MasterKeys
from .index import Space
from .state import STATE, MasterState

#: The largest page of records one request returns.
MAX_PAGE = 1000


def _state(request: web.Request) -> MasterState:
    """Return the master's state, once the request is from a gateway it can trust: with
    auth on, only a member's signature (a cluster without a secret has no members to
    tell apart, so it serves no gateway)."""
    state = request.app[STATE]
    if state.access.enabled and state.access.cluster_key is None:
        raise HTTPProblem(
            403,
            "no_cluster_secret",
            "with auth on, an S3 gateway needs the cluster secret (--cluster-secret-file)",
        )
    return state


async def hello(request: web.Request) -> web.Response:
    """GET /_gateway/hello: what a gateway must know of this master before it serves."""
    state = _state(request)
    return web.json_response(
        {
            "auth": state.access.enabled,
            "anonymous_role": role.label if (role := state.access.anonymous_role) else None,
            "s3_port": state.s3_port,
        }
    )


async def record(request: web.Request) -> web.Response:
    """GET /_gateway/record?key=K: the key's live record, stored form; 404 if none."""
    found = await _state(request).index.get(Space.LIVE, request.query.get("key", ""))
    if found is None:
        raise HTTPProblem(404, "not_found", "no such key")
    return web.json_response({"record": encode(found).decode("utf-8")})


async def records(request: web.Request) -> web.Response:
    """GET /_gateway/records?prefix=P&start=S&limit=N: a page of live records."""
    query = request.query
    limit_text = query.get("limit", str(MAX_PAGE))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
        raise HTTPProblem(400, "bad_limit", f"limit must be from 1 to {MAX_PAGE}")
    limit = int(limit_text)
    index = _state(request).index
    scan = index.records(Space.LIVE, query.get("prefix", ""), query.get("start", ""))
    page = await _first(scan, limit + 1)
    following = page[limit].key if len(page) > limit else None
    return web.json_response(
        {"records": [encode(r).decode("utf-8") for r in page[:limit]], "next": following}
    )


async def _first(scan: AsyncIterator[IndexRecord], count: int) -> list[IndexRecord]:
    """Return the first ``count`` records of ``scan`` (fewer if it ends first)."""
    page: list[IndexRecord] = []
    async for item in scan:
        page.append(item)
        if len(page) == count:
            break
    return page


async def signing_key(request: web.Request) -> web.Response:
    """POST /_gateway/signing-key: a credential's SigV4 key for one scope; 404 if the
    credential is unknown, revoked or expired."""
    body = json_object(await request.read())
    fields = [body.get(name) for name in ("access_key", "date", "region", "service")]
    if not all(isinstance(f, str) and f for f in fields):
        raise HTTPProblem(400, "bad_scope", "need {access_key, date, region, service}")
    access_key, date, region, service = (str(f) for f in fields)
    scope = sigv4.Signed(access_key, date, region, service, "", (), "")
    found = await MasterKeys(_state(request).access).signing_key(scope)
    if found is None:
        raise HTTPProblem(404, "unknown_credential", "unknown, revoked or expired")
    caller = found.caller
    assert caller.role is not None  # a credential always has one
    return web.json_response(
        {
            "key": found.key.hex(),
            "access_key": caller.credential,
            "role": caller.role.label,
            "prefix": caller.prefix,
        }
    )
