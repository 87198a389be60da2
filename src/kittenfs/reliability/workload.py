"""The workload: concurrent clients doing PUT, GET, DELETE and overwrites on a bounded key set.

Values are random bytes of mixed sizes (0 bytes to a few MiB), so a value read back names the
write that made it by its MD5.  Every operation goes into the history with its outcome: ok
(the client was told it worked), failed (told it did not: a 4xx or 5xx), or unknown (a
timeout or a cut connection: it may or may not have happened).
"""

import asyncio
import hashlib
import os
import random
import time

import aiohttp

from .history import FAILED, OK, UNKNOWN, Op

#: (weight, smallest, largest) value sizes: empty, small, medium and large values.
SIZES = ((5, 0, 0), (60, 1, 4096), (30, 65_536, 262_144), (5, 1_048_576, 3 * 1_048_576))
#: (operation, weight).
MIX = (("put", 45), ("get", 40), ("delete", 15))
#: Seconds before an operation counts as unknown.
OP_TIMEOUT = 30.0
#: Seconds a client waits after an operation that got no answer.
RETRY_PAUSE = 0.05


def value_size(rng: random.Random) -> int:
    _, low, high = rng.choices(SIZES, weights=[s[0] for s in SIZES])[0]
    return rng.randint(low, high)


async def run_clients(
    url: str,
    clients: int,
    keys: int,
    duration: float,
    seed: int,
    headers: dict[str, str] | None = None,
) -> list[Op]:
    """Run ``clients`` clients for ``duration`` seconds (sending ``headers``: a credential);
    return the whole history."""
    history: list[Op] = []
    deadline = time.monotonic() + duration
    timeout = aiohttp.ClientTimeout(total=OP_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        await asyncio.gather(
            *(
                _client(
                    session,
                    url,
                    i,
                    [f"/nemesis/{k}" for k in range(keys)],
                    deadline,
                    random.Random(seed * 1000 + i),
                    history,
                )
                for i in range(clients)
            )
        )
    return history


async def _client(
    session: aiohttp.ClientSession,
    url: str,
    client: int,
    keys: list[str],
    deadline: float,
    rng: random.Random,
    history: list[Op],
) -> None:
    while time.monotonic() < deadline:
        kind = rng.choices([m[0] for m in MIX], weights=[m[1] for m in MIX])[0]
        key = rng.choice(keys)
        op = await OPERATIONS[kind](session, url, client, key, rng)
        history.append(op)
        if op.outcome == UNKNOWN:  # the master is down: a refused connection comes back at
            await asyncio.sleep(RETRY_PAUSE)  # once, and thousands would drown the history


async def _put(
    session: aiohttp.ClientSession, url: str, client: int, key: str, rng: random.Random
) -> Op:
    value = os.urandom(value_size(rng))
    md5 = hashlib.md5(value, usedforsecurity=False).hexdigest()
    start = time.monotonic()
    try:
        async with session.put(f"{url}{key}", data=value) as resp:
            await resp.read()
            outcome = OK if resp.status in (201, 204) else FAILED
            detail = str(resp.status)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        outcome, detail = _lost(exc)
    return Op(client, "put", key, md5, len(value), start, time.monotonic(), outcome, detail)


async def _get(
    session: aiohttp.ClientSession, url: str, client: int, key: str, rng: random.Random
) -> Op:
    start = time.monotonic()
    md5, size = "", 0
    try:
        async with session.get(f"{url}{key}") as resp:
            body = await resp.read()
            if resp.status == 200:
                md5, size, outcome = (
                    hashlib.md5(body, usedforsecurity=False).hexdigest(),
                    len(body),
                    OK,
                )
            else:
                outcome = OK if resp.status == 404 else FAILED
            detail = f"{resp.status} via {resp.url.port}" if resp.history else str(resp.status)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        outcome, detail = _lost(exc)
    return Op(client, "get", key, md5, size, start, time.monotonic(), outcome, detail)


async def _delete(
    session: aiohttp.ClientSession, url: str, client: int, key: str, rng: random.Random
) -> Op:
    start = time.monotonic()
    try:
        async with session.delete(f"{url}{key}") as resp:
            await resp.read()
            # 404: the key was absent, which is what a delete asserts.
            outcome = OK if resp.status in (204, 404) else FAILED
            detail = str(resp.status)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        outcome, detail = _lost(exc)
    return Op(client, "delete", key, "", 0, start, time.monotonic(), outcome, detail)


def _lost(exc: BaseException) -> tuple[str, str]:
    """Classify a request that got no answer: always unknown.

    Even "connection refused" is not proof that nothing happened: aiohttp sends a PUT or
    DELETE on a pooled connection and, when that connection turns out dead, retries once on
    a new one (RFC 9112 9.3.1).  The first attempt may have reached a server that applied it
    and died before answering; the retry's refusal is all the client sees.  (Found by this
    suite: a "refused" DELETE that had deleted.)
    """
    return UNKNOWN, type(exc).__name__


OPERATIONS = {"put": _put, "get": _get, "delete": _delete}
