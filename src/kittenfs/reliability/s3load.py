"""The S3 workload: clients that speak S3 to the master's S3 port, every request signed
(Signature V4, as an SDK signs it), on the native workload's keys (objects ``0`` .. of bucket
``nemesis``, which are the keys ``/nemesis/0`` ..).

Steps: PutObject (values of the native workload's sizes, with Content-MD5), GetObject,
DeleteObject, and multipart uploads: CreateMultipartUpload, two or three parts (each but the
last just over S3's 5 MiB minimum, uploaded a moment apart as a client producing its data
does, and retried while the cluster is away), then CompleteMultipartUpload (retried while its
outcome is unknown: S3 answers a retried Complete as the first) or, now and then, Abort.

A Complete goes into the history as a write (kind ``complete``) of the whole object's bytes;
the other steps of an upload (``create``, ``part``, ``abort``) are recorded but write nothing
a read may see.  Multipart bytes are rationed over the run (``budget``), so that uploads are
in flight all through it and the total stays bounded.
"""

import asyncio
import base64
import hashlib
import os
import random
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from ..s3.multipart import MIN_PART
from ..s3.sigv4 import authorize
from .history import FAILED, OK, UNKNOWN, Op
from .workload import TIMEOUT, Step, drive, final_reads, lost, value_size

BUCKET = "nemesis"
#: (step, weight): a multipart upload is one step of many requests.
MIX = (("put", 30), ("multipart", 15), ("get", 40), ("delete", 15))
#: Share of multipart uploads aborted instead of completed.
ABORT_SHARE = 0.1
#: Most seconds a client waits between two parts.
PART_PAUSE = 0.4
#: Tries of one part, or one Complete, while the answer is unknown or a 5xx.
TRIES = 12
#: Seconds between two tries.
TRY_PAUSE = 0.5
#: The last part's largest size.
LAST_PART = 1_048_576

_UPLOAD_ID = re.compile(rb"<UploadId>([^<]+)</UploadId>")


@dataclass(frozen=True, slots=True)
class S3Endpoint:
    """Where the S3 API is and the credential to sign with (any, when auth is off)."""

    url: str
    access_key: str = "KFSNEMESIS"
    secret: str = "auth-is-off-so-this-is-not-checked"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: "CIMultiDictProxy[str]"
    body: bytes


def etag_of(part_md5s: list[str]) -> str:
    """Return S3's ETag of a multipart object: the MD5 of its parts' MD5s, ``-``, count."""
    joined = b"".join(bytes.fromhex(md5) for md5 in part_md5s)
    return f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(part_md5s)}"


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _content_md5(md5: str) -> str:
    return base64.b64encode(bytes.fromhex(md5)).decode("ascii")


def _etag(reply: Reply) -> str:
    return reply.headers.get("ETag", "").strip('"')


@dataclass
class S3Load:
    """The S3 clients' steps over one session, and what they did besides the history."""

    session: aiohttp.ClientSession
    endpoint: S3Endpoint
    #: Bytes of multipart objects the run may upload, handed out evenly over ``duration``.
    budget: int
    duration: float
    started: float = field(default_factory=time.monotonic)
    uploaded: int = 0
    #: (start, end) of every multipart upload: from its create to its Complete or Abort.
    uploads: list[tuple[float, float]] = field(default_factory=list)

    def steps(self) -> dict[str, tuple[int, Step]]:
        step = {
            "put": self.put,
            "multipart": self.multipart,
            "get": self.get,
            "delete": self.delete,
        }
        return {name: (weight, step[name]) for name, weight in MIX}

    async def request(
        self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Reply:
        """Send a signed request (``target``: path and query, percent-encoded); raise what
        aiohttp raises when no answer comes."""
        url = URL(self.endpoint.url + target, encoded=True)
        payload = hashlib.sha256(body).hexdigest() if len(body) < MIN_PART else "UNSIGNED-PAYLOAD"
        signed = authorize(
            method,
            target,
            f"{url.host}:{url.port}",
            self.endpoint.access_key,
            self.endpoint.secret,
            payload=payload,
            headers=headers,
        )
        async with self.session.request(method, url, data=body or None, headers=signed) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def attempt(
        self, kind: str, client: int, key: str, method: str, target: str, **kw: Any
    ) -> tuple[Op, Reply | None]:
        """Send one request of an operation; return its Op (``kw``: its ``body``, ``headers``
        and the Op's ``md5``, ``size`` and ``etag``) and the reply, if one came."""
        md5, size, etag = kw.pop("md5", ""), kw.pop("size", 0), kw.pop("etag", "")
        start = time.monotonic()
        reply = None
        try:
            reply = await self.request(method, target, **kw)
            outcome, detail = (OK if reply.status < 300 else FAILED), str(reply.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            outcome, detail = lost(exc)
        end = time.monotonic()
        return Op(client, kind, key, md5, size, start, end, outcome, detail, etag), reply

    async def put(self, client: int, key: str, rng: random.Random) -> list[Op]:
        """PutObject: a value of the native workload's sizes, with its Content-MD5."""
        value = os.urandom(value_size(rng))
        md5 = _md5(value)
        op, reply = await self.attempt(
            "put",
            client,
            key,
            "PUT",
            key,
            body=value,
            headers={"Content-MD5": _content_md5(md5)},
            md5=md5,
            size=len(value),
            etag=md5,
        )
        return [_noting_etag(op, reply)]

    async def get(self, client: int, key: str, rng: random.Random) -> list[Op]:
        """GetObject: the whole object, its MD5 and the ETag it came with; 404 is absent."""
        op, reply = await self.attempt("get", client, key, "GET", key)
        if reply is None:
            return [op]
        if reply.status == 200:
            op = replace(op, md5=_md5(reply.body), size=len(reply.body), etag=_etag(reply))
        elif reply.status == 404:
            op = replace(op, outcome=OK)
        return [op]

    async def delete(self, client: int, key: str, rng: random.Random) -> list[Op]:
        """DeleteObject (204 whether the key was there or not)."""
        op, _ = await self.attempt("delete", client, key, "DELETE", key)
        return [op]

    async def multipart(self, client: int, key: str, rng: random.Random) -> list[Op]:
        """A whole multipart upload, or a PutObject when the budget says wait."""
        count = rng.randint(2, 3)
        sizes = [MIN_PART + rng.randint(0, 65_536) for _ in range(count - 1)]
        sizes.append(rng.randint(1, LAST_PART))
        if not self._may_upload(sum(sizes)):
            return await self.put(client, key, rng)
        self.uploaded += sum(sizes)
        create, reply = await self.attempt("create", client, key, "POST", f"{key}?uploads")
        match = _UPLOAD_ID.search(reply.body) if reply is not None else None
        if create.outcome != OK or match is None:
            return [create]
        ops = [create]
        target = f"{key}?uploadId={match.group(1).decode()}"
        whole, md5s = hashlib.md5(usedforsecurity=False), []
        for number, size in enumerate(sizes, 1):
            await asyncio.sleep(rng.uniform(0, PART_PAUSE))
            part = os.urandom(size)
            md5s.append(_md5(part))
            whole.update(part)
            tries = await self._retried(
                "part",
                client,
                key,
                "PUT",
                f"{target}&partNumber={number}",
                body=part,
                headers={"Content-MD5": _content_md5(md5s[-1])},
                md5=md5s[-1],
                size=size,
            )
            ops += tries
            if tries[-1].outcome != OK:
                break
        else:
            if rng.random() >= ABORT_SHARE:
                ops += await self._retried(
                    "complete",
                    client,
                    key,
                    "POST",
                    target,
                    body=_manifest(md5s),
                    md5=whole.hexdigest(),
                    size=sum(sizes),
                    etag=etag_of(md5s),
                )
                self.uploads.append((create.start, ops[-1].end))
                return ops
        ops += await self._retried("abort", client, key, "DELETE", target)
        self.uploads.append((create.start, ops[-1].end))
        return ops

    async def _retried(self, kind: str, client: int, key: str, *args: str, **kw: Any) -> list[Op]:
        """Try a step of an upload until it is answered with anything but a 5xx (TRIES at
        most); return every try's Op."""
        ops = []
        for _ in range(TRIES):
            op, reply = await self.attempt(kind, client, key, *args, **kw)
            if kind == "complete":
                op = _noting_etag(_complete_outcome(op, reply), reply)
            ops.append(op)
            if op.outcome != UNKNOWN and (reply is None or reply.status < 500):
                break
            await asyncio.sleep(TRY_PAUSE)
        return ops

    def _may_upload(self, size: int) -> bool:
        """Return True if ``size`` more bytes keep the uploads within the budget's share of
        the time gone (plus a tenth of the budget, so the first upload can start)."""
        gone = min(1.0, (time.monotonic() - self.started) / self.duration + 0.1)
        return self.uploaded + size <= self.budget * gone

    async def read(self, key: str) -> Op:
        """GetObject ``key`` once, as a final read."""
        return (await self.get(-1, key, random.Random()))[0]

    async def make_bucket(self, deadline: float) -> None:
        """Create the bucket (again and again until ``deadline``, while the S3 port is not
        answering yet); an existing one of ours will do."""
        while True:
            try:
                reply = await self.request("PUT", f"/{BUCKET}")
                if reply.status == 200 or b"BucketAlreadyOwnedByYou" in reply.body:
                    return
                problem = f"{reply.status} {reply.body[:300]!r}"
            except (aiohttp.ClientError, OSError) as exc:
                problem = repr(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not create the S3 bucket {BUCKET}: {problem}")
            await asyncio.sleep(0.5)

    async def uploads_in_progress(self) -> int:
        """Return how many multipart uploads the bucket has in progress (ListMultipartUploads),
        -1 if the S3 API did not answer."""
        try:
            reply = await self.request("GET", f"/{BUCKET}?uploads")
        except (aiohttp.ClientError, OSError):
            return -1
        return reply.body.count(b"<Upload>") if reply.status == 200 else -1


def _manifest(md5s: list[str]) -> bytes:
    parts = "".join(
        f'<Part><PartNumber>{n}</PartNumber><ETag>"{md5}"</ETag></Part>'
        for n, md5 in enumerate(md5s, 1)
    )
    return f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()


def _complete_outcome(op: Op, reply: Reply | None) -> Op:
    """A Complete may fail with a 200 whose body is an error (S3 says so): count it failed."""
    if reply is not None and reply.status == 200 and b"<Error>" in reply.body:
        return replace(op, outcome=FAILED, detail="200 with an Error")
    return op


def _noting_etag(op: Op, reply: Reply | None) -> Op:
    """Note in the Op's detail an acknowledged write whose ETag is not its bytes' (the final
    reads then show the checker which ETag the object kept)."""
    given = _etag(reply) if reply is not None and op.outcome == OK else op.etag
    return op if given == op.etag else replace(op, detail=f"{op.detail} etag {given}")


async def run_s3_clients(
    endpoint: S3Endpoint, clients: int, keys: int, duration: float, seed: int, budget: int
) -> tuple[list[Op], S3Load]:
    """Run ``clients`` S3 clients for ``duration`` seconds (``budget``: bytes of multipart
    objects); return the history, and the load (its uploads)."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        load = S3Load(session, endpoint, budget, duration)
        return await drive(load.steps(), clients, keys, duration, seed), load


async def prepare(endpoint: S3Endpoint, deadline: float) -> None:
    """Create the workload's bucket."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        await S3Load(session, endpoint, 0, 1).make_bucket(deadline)


async def settle(endpoint: S3Endpoint, keys: int, deadline: float) -> tuple[int, list[Op]]:
    """Wait (until ``deadline``) for the master's cleaner to end every upload the run left in
    progress, then read every key as the final state; return the uploads still left, and
    the final reads."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        load = S3Load(session, endpoint, 0, 1)
        left = await load.uploads_in_progress()
        while left != 0 and time.monotonic() < deadline:
            await asyncio.sleep(1)
            left = await load.uploads_in_progress()
        return left, await final_reads(load.read, keys)
