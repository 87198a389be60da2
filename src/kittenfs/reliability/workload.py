"""The workload: concurrent clients doing PUT, GET, DELETE and overwrites on a bounded key set.

``drive`` runs the clients and ``final_reads`` reads the end state, for this native workload
and the S3 one (s3load.py) alike.

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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

import aiohttp

from .history import FAILED, OK, UNKNOWN, Op

#: (weight, smallest, largest) value sizes: empty, small, medium and large values.
SIZES = ((5, 0, 0), (60, 1, 4096), (30, 65_536, 262_144), (5, 1_048_576, 3 * 1_048_576))
#: (operation, weight).
MIX = (("put", 45), ("get", 40), ("delete", 15))
#: Seconds before an operation counts as unknown.
OP_TIMEOUT = 30.0
TIMEOUT = aiohttp.ClientTimeout(total=OP_TIMEOUT)
#: Seconds a client waits after an operation that got no answer.
RETRY_PAUSE = 0.05
#: Tries of each final read.
FINAL_TRIES = 5


def value_size(rng: random.Random) -> int:
    _, low, high = rng.choices(SIZES, weights=[s[0] for s in SIZES])[0]
    return rng.randint(low, high)


#: One client step on a key: ``(client, key, rng) -> the operations it made``.
Step = Callable[[int, str, random.Random], Awaitable[list[Op]]]


def key_set(keys: int) -> list[str]:
    """Return the workload's keys (S3: objects ``0`` .. of bucket ``nemesis``)."""
    return [f"/nemesis/{k}" for k in range(keys)]


async def drive(
    steps: Mapping[str, tuple[int, Step]], clients: int, keys: int, duration: float, seed: int
) -> list[Op]:
    """Run ``clients`` clients for ``duration`` seconds, each doing steps (by their weights)
    on random keys; return the whole history."""
    history: list[Op] = []
    deadline = time.monotonic() + duration
    names, weights = list(steps), [weight for weight, _ in steps.values()]

    async def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        chosen = key_set(keys)
        while time.monotonic() < deadline:
            _, step = steps[rng.choices(names, weights=weights)[0]]
            ops = await step(i, rng.choice(chosen), rng)
            history.extend(ops)
            if ops and ops[-1].outcome == UNKNOWN:  # the master is down: a refused connection
                await asyncio.sleep(RETRY_PAUSE)  # comes back at once, and thousands would
                # drown the history

    await asyncio.gather(*(client(i) for i in range(clients)))
    return history


async def final_reads(read: Callable[[str], Awaitable[Op]], keys: int) -> list[Op]:
    """Read every key once more (up to 5 tries, a second apart), as the checker's final
    state; a key whose every try failed is there with its last failure."""
    final = []
    for key in key_set(keys):
        for _ in range(FINAL_TRIES):
            op = await read(key)
            if op.outcome == OK:
                break
            await asyncio.sleep(1)
        final.append(replace(op, client=-1, detail=f"final {op.detail}"))
    return final


async def run_clients(
    urls: list[str],
    clients: int,
    keys: int,
    duration: float,
    seed: int,
    headers: dict[str, str] | None = None,
) -> list[Op]:
    """Run ``clients`` clients of the native API for ``duration`` seconds (sending
    ``headers``: a credential), client ``i`` through master ``urls[i % len(urls)]``;
    return the whole history."""
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers=headers) as session:
        return await drive(
            {kind: (weight, _native(OPERATIONS[kind], session, urls)) for kind, weight in MIX},
            clients,
            keys,
            duration,
            seed,
        )


async def native_final_reads(
    url: str, keys: int, headers: dict[str, str] | None = None
) -> list[Op]:
    """Read every key through the native API as the checker's final state."""
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers=headers) as session:
        return await final_reads(lambda key: _get(session, url, -1, key, random.Random()), keys)


def _native(operation: "Operation", session: aiohttp.ClientSession, urls: list[str]) -> Step:
    async def step(client: int, key: str, rng: random.Random) -> list[Op]:
        return [await operation(session, urls[client % len(urls)], client, key, rng)]

    return step


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
        outcome, detail = lost(exc)
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
        outcome, detail = lost(exc)
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
        outcome, detail = lost(exc)
    return Op(client, "delete", key, "", 0, start, time.monotonic(), outcome, detail)


def lost(exc: BaseException) -> tuple[str, str]:
    """Classify a request that got no answer: always unknown.

    Even "connection refused" is not proof that nothing happened: aiohttp sends a PUT or
    DELETE on a pooled connection and, when that connection turns out dead, retries once on
    a new one (RFC 9112 9.3.1).  The first attempt may have reached a server that applied it
    and died before answering; the retry's refusal is all the client sees.  (Found by this
    suite: a "refused" DELETE that had deleted.)
    """
    return UNKNOWN, type(exc).__name__


Operation = Callable[[aiohttp.ClientSession, str, int, str, random.Random], Awaitable[Op]]
OPERATIONS: dict[str, Operation] = {"put": _put, "get": _get, "delete": _delete}
