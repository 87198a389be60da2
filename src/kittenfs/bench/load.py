"""The load generator: several processes, each an asyncio loop with one pooled aiohttp session.

A phase runs one operation over a list of keys at a given concurrency.  The keys are split
among the processes, and each process runs ``concurrency / processes`` tasks, so the
generator's own CPU is spread over cores; its CPU seconds are reported so a saturated client
shows up in the results.

The ``s3*`` operations speak S3 to any S3 endpoint (keys are ``/<bucket>/<key>``), every
request signed with Signature V4 and an ``UNSIGNED-PAYLOAD``, so that the generator never
hashes a body; large objects go up as multipart uploads.
"""

import asyncio
import hashlib
import itertools
import multiprocessing
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from yarl import URL

from ..s3.sigv4 import authorize, uri_encode
from .procstat import own_cpu_seconds

#: GETs of values this large are streamed and counted, not read into memory.
STREAM_FROM = 1024 * 1024
STREAM_CHUNK = 1024 * 1024
#: Operations a phase can run.
OPERATIONS = ("put", "get", "delete", "cycle", "mixed", "list")
S3_OPERATIONS = ("s3put", "s3get", "s3multipart", "s3delete")
#: Part size of the multipart uploads ("s3multipart"), unless a phase says otherwise.
PART_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class S3Credential:
    """An S3 access key and its secret: the ``s3*`` operations sign every request with it."""

    access_key: str
    secret: str


@dataclass
class Phase:
    """What one phase does: ``operation`` on ``keys`` of ``base_url`` at ``concurrency``."""

    base_url: str
    operation: str
    keys: list[str]
    concurrency: int
    value_size: int = 1024
    #: For "mixed": fraction of reads, and the Zipf exponent of the key popularity.
    read_fraction: float = 0.9
    zipf_s: float = 1.1
    #: For "list": page size.
    page: int = 1000
    #: Headers every request carries (a credential, when the target has auth on).
    headers: dict[str, str] = field(default_factory=dict)
    #: For the ``s3*`` operations: the key that signs them, and the multipart part size.
    s3: S3Credential | None = None
    part_size: int = PART_SIZE


@dataclass
class PhaseResult:
    """Latencies (seconds) and counts of one phase, merged over the generator processes."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    bytes: int = 0
    wall: float = 0.0
    client_cpu: float = 0.0
    error_samples: list[str] = field(default_factory=list)
    first: float = float("inf")
    last: float = float("-inf")

    def merge(self, other: dict[str, Any]) -> None:
        self.first = min(self.first, other["start"])
        self.last = max(self.last, other["end"])
        self.wall = max(0.0, self.last - self.first)
        self.latencies += other["latencies"]
        self.errors += other["errors"]
        self.bytes += other["bytes"]
        self.client_cpu += other["cpu"]
        self.error_samples = (self.error_samples + other["error_samples"])[:5]


def value_for(key: str, size: int) -> bytes:
    """Return a deterministic value for ``key``, so a reader can check the bytes it gets."""
    seed = hashlib.md5(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def run_phase(phase: Phase, processes: int) -> PhaseResult:
    """Run ``phase`` over ``processes`` generator processes; return the merged result.

    A ``base_url`` naming several masters (comma-separated: they share an index) spreads
    the processes over them, one process at least for each."""
    bases = phase.base_url.split(",")
    processes = max(1, min(max(processes, len(bases)), phase.concurrency))
    shares = [
        Phase(
            **{
                **phase.__dict__,
                "base_url": bases[i % len(bases)],
                "keys": phase.keys[i::processes],
                "concurrency": _share(phase.concurrency, processes, i),
            }
        )
        for i in range(processes)
    ]
    result = PhaseResult()  # its wall time runs from the first request to the last answer
    if processes == 1:
        result.merge(_run_share(shares[0]))
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            for part in pool.map(_run_share, shares):
                result.merge(part)
    return result


def _share(total: int, parts: int, i: int) -> int:
    return total // parts + (1 if i < total % parts else 0)


def _run_share(phase: Phase) -> dict[str, Any]:
    return asyncio.run(_drive(phase))


async def _drive(phase: Phase) -> dict[str, Any]:
    cpu = own_cpu_seconds()
    out: dict[str, Any] = {"latencies": [], "errors": 0, "bytes": 0, "error_samples": []}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=phase.headers
    ) as session:
        out["start"] = time.time()
        pending = iter(phase.keys) if phase.operation != "mixed" else None
        rng = random.Random(len(phase.keys))
        cumulative = list(
            itertools.accumulate(1 / (rank + 1) ** phase.zipf_s for rank in range(len(phase.keys)))
        )

        def next_key() -> str | None:
            if pending is not None:
                return next(pending, None)
            return rng.choices(phase.keys, cum_weights=cumulative)[0]

        async def task(count: int | None) -> None:
            done = 0
            while count is None or done < count:
                key = next_key()
                if key is None:
                    return
                started = time.perf_counter()
                try:
                    moved = await _operate(session, phase, key, rng)
                    out["bytes"] += moved  # not "+= await": that loses concurrent updates
                    out["latencies"].append(time.perf_counter() - started)
                except (TimeoutError, aiohttp.ClientError, OSError, AssertionError) as exc:
                    out["errors"] += 1
                    if len(out["error_samples"]) < 5:
                        out["error_samples"].append(f"{type(exc).__name__}: {exc}"[:200])
                done += 1

        if phase.operation == "mixed":
            per_task = max(1, len(phase.keys) // phase.concurrency)
            await asyncio.gather(*(task(per_task) for _ in range(phase.concurrency)))
        else:
            await asyncio.gather(*(task(None) for _ in range(phase.concurrency)))
    out["end"] = time.time()
    out["cpu"] = own_cpu_seconds() - cpu
    return out


async def _operate(
    session: aiohttp.ClientSession, phase: Phase, key: str, rng: random.Random
) -> int:
    """Run one operation on ``key``; return the value bytes moved.

    Raise AssertionError on a bad answer."""
    url = f"{phase.base_url}{key}"
    operation = phase.operation
    if operation == "mixed":
        operation = "get" if rng.random() < phase.read_fraction else "put"
    if operation == "put":
        await _put(session, url, value_for(key, phase.value_size), (200, 201, 204))
        return phase.value_size
    if operation == "get":
        async with session.get(url) as resp:
            assert resp.status == 200, f"GET {resp.status}"
            if phase.value_size < STREAM_FROM:
                return len(await resp.read())
            received = 0  # large bodies are counted as they stream, never held whole
            async for chunk in resp.content.iter_chunked(STREAM_CHUNK):
                received += len(chunk)
            return received
    if operation == "delete":
        await _delete(session, url)
        return 0
    if operation == "cycle":
        value = value_for(key, phase.value_size)
        await _put(session, url, value, (201,))  # fresh keys only
        async with session.get(url) as resp:
            assert resp.status == 200 and await resp.read() == value, f"GET {resp.status}"
        await _delete(session, url)
        return 2 * phase.value_size
    if operation in S3_OPERATIONS:
        return await _s3_operate(session, phase, key)
    if operation == "list":
        listed, start = 0, ""
        while True:
            params = {"list": "", "limit": str(phase.page), "start": start}
            async with session.get(f"{phase.base_url}{key}", params=params) as resp:
                assert resp.status == 200, f"LIST {resp.status}"
                page = await resp.json()
            listed += len(page["keys"])
            if not page["next"]:
                return listed
            start = page["next"]
    raise ValueError(f"unknown operation {operation!r}")


async def _put(session: aiohttp.ClientSession, url: str, value: bytes, ok: tuple[int, ...]) -> None:
    async with session.put(url, data=value) as resp:
        assert resp.status in ok, f"PUT {resp.status}"
        await resp.read()


async def _delete(session: aiohttp.ClientSession, url: str) -> None:
    async with session.delete(url) as resp:
        assert resp.status == 204, f"DELETE {resp.status}"


def create_bucket(s3_url: str, credential: S3Credential, bucket: str) -> bool:
    """Create ``bucket`` (signed with ``credential``); return True once it exists."""
    url = httpx.URL(s3_url)
    host = f"{url.host}:{url.port}"
    headers = authorize("PUT", f"/{bucket}", host, credential.access_key, credential.secret)
    try:
        made = httpx.put(f"{s3_url}/{bucket}", headers=headers, timeout=10.0)
    except httpx.HTTPError:
        return False
    return made.status_code == 200 or "BucketAlreadyOwnedByYou" in made.text


async def _s3_operate(session: aiohttp.ClientSession, phase: Phase, key: str) -> int:
    """Run one S3 operation on ``key`` (``/<bucket>/<key>``); return the value bytes moved."""
    if phase.operation == "s3put":
        await _s3_send(session, phase, "PUT", key, value_for(key, phase.value_size))
        return phase.value_size
    if phase.operation == "s3get":
        return await _s3_get(session, phase, key)
    if phase.operation == "s3delete":
        await _s3_send(session, phase, "DELETE", key, ok=204)
        return 0
    if phase.operation == "s3multipart":
        await _multipart(session, phase, key)
        return phase.value_size
    raise ValueError(f"unknown operation {phase.operation!r}")


async def _multipart(session: aiohttp.ClientSession, phase: Phase, key: str) -> None:
    """Upload ``phase.value_size`` bytes to ``key`` in parts of ``phase.part_size``, one
    part after the other (the phase's concurrency is the number of uploads at a time)."""
    created = await _s3_text(session, phase, "POST", f"{key}?uploads")
    upload = uri_encode(_element(created, "UploadId"), slash=False)
    parts = []
    for number, start in enumerate(range(0, phase.value_size, phase.part_size), start=1):
        size = min(phase.part_size, phase.value_size - start)
        target = f"{key}?partNumber={number}&uploadId={upload}"
        etag = await _s3_send(session, phase, "PUT", target, value_for(f"{key}#{number}", size))
        parts.append(f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>")
    document = f"<CompleteMultipartUpload>{''.join(parts)}</CompleteMultipartUpload>"
    done = await _s3_text(session, phase, "POST", f"{key}?uploadId={upload}", document.encode())
    assert "<Error>" not in done and "ETag" in done, f"Complete answered {done[:200]!r}"


async def _s3_text(
    session: aiohttp.ClientSession, phase: Phase, method: str, target: str, body: bytes = b""
) -> str:
    """Send one signed S3 request that must answer 200; return its body as text."""
    url, headers = _signed(phase, method, target)
    async with session.request(method, url, headers=headers, data=body) as resp:
        text = await resp.text()
        assert resp.status == 200, f"S3 {method} {resp.status} {text[:300]}"
        return text


async def _s3_send(
    session: aiohttp.ClientSession,
    phase: Phase,
    method: str,
    target: str,
    body: bytes | None = None,
    ok: int = 200,
) -> str:
    """Send one signed S3 request that must answer ``ok``; return its ETag."""
    url, headers = _signed(phase, method, target)
    async with session.request(method, url, headers=headers, data=body) as resp:
        answer = await resp.read()
        assert resp.status == ok, f"S3 {method} {resp.status} {answer[:300]!r}"
        return resp.headers.get("ETag", "")


async def _s3_get(session: aiohttp.ClientSession, phase: Phase, target: str) -> int:
    """GET one object, signed; return the bytes received (counted as they stream)."""
    url, headers = _signed(phase, "GET", target)
    async with session.get(url, headers=headers) as resp:
        if resp.status != 200:
            answer = await resp.read()
            raise AssertionError(f"S3 GET {resp.status} {answer[:300]!r}")
        received = 0
        async for chunk in resp.content.iter_chunked(STREAM_CHUNK):
            received += len(chunk)
        return received


def _signed(phase: Phase, method: str, target: str) -> tuple[URL, dict[str, str]]:
    """Return the URL (sent exactly as signed) and the signed headers of one request."""
    assert phase.s3 is not None, "an s3 operation needs a credential"
    url = URL(f"{phase.base_url}{target}", encoded=True)
    host = f"{url.raw_host}:{url.explicit_port}" if url.explicit_port else str(url.raw_host)
    headers = authorize(method, target, host, phase.s3.access_key, phase.s3.secret)
    headers["Host"] = host
    return url, headers


def _element(document: str, name: str) -> str:
    """Return the text of the first ``<name>`` element of an S3 XML answer."""
    start = document.find(f"<{name}>")
    end = document.find(f"</{name}>", start)
    assert start >= 0 and end > start, f"no {name} in {document[:200]!r}"
    return document[start + len(name) + 2 : end]
