"""Credential routes of the master (docs/api.md, docs/security.md).

    POST   /_keys            {"role": "write", "prefix": "/photos/", "expires_s": 2592000}
                             -> 201 {access_key, secret_key, token, role, prefix, expires_ms}
                             (the only time the secret is shown)
    GET    /_keys            -> {"keys": [{access_key, role, prefix, expires_ms, created_ms}]}
    DELETE /_keys/<access key>  revoke -> 204 (404 if unknown)
    POST   /_sign            {"key": "/k", "method": "GET", "expires_s": 3600}
                             -> {"url": ..., "expires": unix seconds}: a link anyone may use
                             for that method on that key until it expires

Every ``/_keys`` route is for admins; ``/_sign`` is for any caller who may do the method on
the key themselves (a link never grants more than its signer has, and dies with it).
"""

import time
from typing import Any

from aiohttp import web

from ..credentials import (
    MAX_LINK_SECONDS,
    Role,
    is_access_key,
    new_credential,
    secret_of,
    token_of,
)
from ..httputil import HTTPProblem, finite_number, json_key, json_object
from ..keys import InvalidKey, check_key, key_path
from .access import Need, link_url
from .state import STATE, MasterState


async def dispatch(request: web.Request, state: MasterState, rest: str, need: Need) -> web.Response:
    """Route ``/_keys`` and ``/_keys/<access key>``; ``rest`` is the part after ``/_keys/``."""
    await state.access.authorize(request, need)
    if not rest:
        if request.method == "POST":
            return await create(request, state)
        if request.method == "GET":
            return web.json_response(
                {"keys": [c.describe() for c in await state.index.credentials()]}
            )
        raise HTTPProblem(405, "method_not_allowed", "/_keys accepts GET, POST", Allow="GET, POST")
    if request.method != "DELETE":
        raise HTTPProblem(405, "method_not_allowed", "/_keys/<id> accepts DELETE", Allow="DELETE")
    if not is_access_key(rest) or not await state.index.delete_credential(rest):
        raise HTTPProblem(404, "no_such_key", f"no credential {rest!r}")
    return web.Response(status=204)


async def create(request: web.Request, state: MasterState) -> web.Response:
    """POST /_keys: create a credential; its secret is in this answer and nowhere else."""
    body = json_object(await request.read())
    unknown = set(body) - {"role", "prefix", "expires_s"}
    if unknown:
        raise HTTPProblem(400, "bad_option", f"unknown options: {', '.join(sorted(unknown))}")
    try:
        role = Role.named(str(body.get("role", "")))
    except ValueError as exc:
        raise HTTPProblem(400, "bad_option", str(exc)) from None
    prefix = _prefix(body.get("prefix", "/"))
    now_ms = int(time.time() * 1000)
    expires_s = body.get("expires_s")
    expires_ms = (
        now_ms + int(_seconds(expires_s, 100 * 365 * 86400) * 1000) if expires_s is not None else 0
    )
    credential = new_credential(role, prefix, expires_ms, now_ms)
    await state.index.save_credential(credential)
    secret = secret_of(state.access.master_key, credential)
    return web.json_response(
        {
            **credential.describe(),
            "secret_key": secret,
            "token": token_of(credential.access_key, secret),
        },
        status=201,
    )


async def sign(request: web.Request) -> web.Response:
    """POST /_sign {key, method, expires_s}: a link for ``method`` on ``key``, signed on
    behalf of the caller (who must be allowed that method on that key)."""
    state = request.app[STATE]
    await state.access.identify(request)  # who asks, before the body is read
    body = json_object(await request.read())
    key, method = json_key(body), body.get("method", "GET")
    if method not in ("GET", "PUT"):
        raise HTTPProblem(400, "bad_option", "method must be GET or PUT")
    seconds = _seconds(body.get("expires_s", 3600), MAX_LINK_SECONDS)
    caller = await state.access.authorize(
        request, Need.READ if method == "GET" else Need.WRITE, key
    )
    if caller.link is not None:
        raise HTTPProblem(403, "forbidden", "a link cannot sign other links")
    params = state.access.sign(caller, method, key, seconds)
    url = link_url(state.public_url, key_path(key), params)
    return web.json_response({"url": url, "expires": int(params["kfs-expires"])})


def _prefix(value: Any) -> str:
    """Return a credential's key prefix: "/" or the start of a key."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise HTTPProblem(400, "bad_option", "prefix must be a key prefix starting with /")
    try:
        check_key(value)
    except InvalidKey as exc:
        raise HTTPProblem(400, "bad_option", f"prefix: {exc}") from None
    return value


def _seconds(value: Any, most: float) -> float:
    """Return a positive, finite number of seconds up to ``most``; 400 otherwise."""
    seconds = finite_number(value)
    if seconds is None or not 0 < seconds <= most:
        raise HTTPProblem(
            400, "bad_option", f"expires_s must be a number of seconds in (0, {most:.0f}]"
        )
    return seconds
