"""Batched small writes: the worker's POST /batch and batch stream, and the master sending
small PUTs through them."""

import asyncio
import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import httpx
import pytest
from cluster import Cluster, wait_until

from kittenfs import batch
from kittenfs.clusterauth import session_middlewares
from kittenfs.placement import blob_id, new_version


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_a_batch_applies_each_operation_and_answers_each(shared: Cluster) -> None:
    worker = shared.nodes[0].url
    version = new_version()
    kept, gone = blob_id("/batch/kept", version), blob_id("/batch/gone", version)
    first = httpx.post(
        f"{worker}/batch",
        auth=shared.auth,
        content=batch.encode(
            [
                batch.PutOp(kept, "/batch/kept", version, b"kept bytes"),
                batch.PutOp(gone, "/batch/gone", version, b""),
                batch.DeleteOp(blob_id("/batch/never", version)),
            ]
        ),
    )
    assert first.status_code == 200, first.text
    assert first.json()["results"] == [
        {"status": 201, "size": 10, "md5": md5(b"kept bytes")},
        {"status": 201, "size": 0, "md5": md5(b"")},
        {"status": 404},
    ]
    second = httpx.post(
        f"{worker}/batch", auth=shared.auth, content=batch.encode([batch.DeleteOp(gone)])
    )
    assert second.json()["results"] == [{"status": 204}]
    assert httpx.get(f"{worker}/blob/{kept}", auth=shared.auth).content == b"kept bytes"
    assert httpx.get(f"{worker}/blob/{gone}", auth=shared.auth).status_code == 404


@pytest.mark.parametrize(
    ("method", "content", "status", "error"),
    [
        ("GET", b"", 405, "method_not_allowed"),
        ("POST", b"\x00\x00\x00\x02{}", 400, "bad_batch"),
        ("POST", b"not a batch", 400, "bad_batch"),
        (
            "POST",
            b"\x00" * (batch.MAX_MANIFEST_BYTES + batch.MAX_VALUE_BYTES + 5),
            413,
            "batch_too_large",
        ),
    ],
)
def test_bad_batches_get_a_json_4xx_and_change_nothing(
    shared: Cluster, method: str, content: bytes, status: int, error: str
) -> None:
    worker = shared.nodes[1]
    before = shared.worker_blobs(worker)
    answer = httpx.request(
        method, f"{worker.url}/batch", content=content, timeout=30, auth=shared.auth
    )
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert shared.worker_blobs(worker) == before


def test_concurrent_small_puts_each_land_whole_on_every_replica(shared: Cluster) -> None:
    """Many small PUTs at once share batches; each replica must hold each key's own bytes."""
    values = {f"/batch/many/{i}": os.urandom(1 + i * 37 % 5000) for i in range(200)}

    # One client for the lot (a new httpx client per request builds a TLS context each time:
    # that, not kittenFS, took most of this test's time).
    limits = httpx.Limits(max_connections=32)
    with httpx.Client(timeout=30, limits=limits) as http:

        def put(item: tuple[str, bytes]) -> int:
            return http.put(f"{shared.url}{item[0]}", content=item[1]).status_code

        with ThreadPoolExecutor(32) as pool:
            assert set(pool.map(put, values.items())) == {201}
        for node in shared.nodes:
            held = {b["key"]: b for b in shared.worker_blobs(node) if b["key"] in values}
            assert set(held) == set(values)
            for key, blob in held.items():
                assert (blob["size"], blob["md5"]) == (len(values[key]), md5(values[key]))
                assert (
                    http.get(f"{node.url}/blob/{blob['blob']}", auth=shared.auth).content
                    == values[key]
                )
        with ThreadPoolExecutor(32) as pool:
            codes = pool.map(lambda k: http.delete(f"{shared.url}{k}").status_code, values)
            assert set(codes) == {204}
    wait_until(
        lambda: (
            not [
                b for node in shared.nodes for b in shared.worker_blobs(node) if b["key"] in values
            ]
        ),
        "the workers delete the copies",
    )


def batch_requests(cluster: Cluster, worker: int, method: str) -> float:
    """Return how many batches a worker has answered that came by ``method`` (``POST``, or
    ``STREAM`` for the batch stream's)."""
    text = httpx.get(f"{cluster.nodes[worker].url}/metrics").text
    pattern = rf'kittenfs_requests_total{{method="{method}",route="batch",status="200"}} (\S+)'
    return sum(float(found) for found in re.findall(pattern, text))


def test_the_master_sends_small_writes_on_each_workers_batch_stream(shared: Cluster) -> None:
    """Signed with the cluster secret at the upgrade, one stream per worker carries them."""
    before = [
        (batch_requests(shared, i, "STREAM"), batch_requests(shared, i, "POST")) for i in (0, 1)
    ]
    with httpx.Client(timeout=30) as http:
        for i in range(30):
            assert http.put(f"{shared.url}/stream/{i}", content=b"v" * i).status_code == 201
        for i in range(30):
            assert http.get(f"{shared.url}/stream/{i}").content == b"v" * i
            assert http.delete(f"{shared.url}/stream/{i}").status_code == 204
    for i in (0, 1):
        streamed, posted = batch_requests(shared, i, "STREAM"), batch_requests(shared, i, "POST")
        assert streamed > before[i][0] and posted == before[i][1]


def test_the_batch_stream_answers_bad_messages_and_refuses_strangers(shared: Cluster) -> None:
    assert shared.key is not None
    url = f"{shared.nodes[0].url}/batch"
    version = new_version()
    good = batch.PutOp(blob_id("/stream/raw", version), "/stream/raw", version, b"raw bytes")

    async def main() -> None:
        async with aiohttp.ClientSession() as stranger:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await stranger.ws_connect(url)
            assert refused.value.status == 401
        async with aiohttp.ClientSession(middlewares=session_middlewares(shared.key)) as member:
            async with member.ws_connect(url) as stream:
                await stream.send_bytes(b"\x00" * 8 + b"not a batch")
                await stream.send_bytes(b"\x00" * 7 + b"\x01" + batch.encode([good]))
                answers = {}
                for _ in range(2):
                    message = await asyncio.wait_for(stream.receive_bytes(), 30)
                    answers[message[:8]] = json.loads(message[8:])
                assert answers[b"\x00" * 8]["error"] == "bad_batch"
                assert answers[b"\x00" * 7 + b"\x01"] == {
                    "results": [{"status": 201, "size": 9, "md5": md5(b"raw bytes")}]
                }
            async with member.ws_connect(url) as stream:
                await stream.send_str("text")
                closing = await asyncio.wait_for(stream.receive(), 30)
                assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1003

    asyncio.run(main())
    held = httpx.get(f"{shared.nodes[0].url}/blob/{good.blob}", auth=shared.auth)
    assert held.content == b"raw bytes"
