"""Batched small writes: the worker's POST /batch, and the master sending small PUTs through it."""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from cluster import Cluster, wait_until

from kittenfs import batch
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
