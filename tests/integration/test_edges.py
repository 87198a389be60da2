"""Edges of the API: concurrent registration, reserved key names, direct-read switches."""

import threading
import uuid

import httpx

import kittenfs


def test_concurrent_registrations_get_distinct_indices(cluster):
    results: list[int] = []

    def register() -> None:
        body = {"id": f"w-{uuid.uuid4().hex[:12]}", "url": "http://127.0.0.1:9", "index": None}
        response = httpx.post(f"{cluster.url}/_workers/register", json=body, timeout=10)
        results.append(response.json()["index"])

    threads = [threading.Thread(target=register) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(3, 15))
    assert [w["index"] for w in cluster.cluster_info()["workers"]] == list(range(15))


def test_bad_registration_and_heartbeat_are_400(cluster):
    bad = httpx.post(f"{cluster.url}/_workers/register", json={"id": 5})
    assert bad.status_code == 400 and bad.json()["error"] == "bad_registration"
    assert httpx.post(f"{cluster.url}/_workers/register", content=b"{").status_code == 400
    unknown = httpx.post(f"{cluster.url}/_workers/heartbeat", json={"id": "w-x", "stats": {}})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_worker"


def test_client_reaches_keys_named_like_routes(cluster):
    with kittenfs.Client(cluster.url) as client:
        names = ["/health", "/_cluster", "/_x", "/put/x", "/get/y", "/delete/z", "/gets", "/clear"]
        for name in names:
            client.put(name, name.encode())
        for name in names:
            assert client.get(name) == name.encode()
            assert client.head(name).size == len(name)
        assert sorted(client.list("/")) == sorted(names, key=str.encode)
        client.delete("/clear")
        assert not client.exists("/clear")
    assert httpx.get(f"{cluster.url}/health").json()["role"] == "master"


def test_direct_switch_header_values(cluster):
    httpx.put(f"{cluster.url}/sw", content=b"0123456789")
    assert httpx.get(f"{cluster.url}/sw", headers={"X-Kfs-Direct": "0"}).status_code == 302
    assert httpx.get(f"{cluster.url}/sw", headers={"X-Kfs-Direct": "true"}).content == b"0123456789"
    bad = httpx.get(f"{cluster.url}/sw?direct", headers={"Range": "bytes=50-"})
    assert bad.status_code == 416
    assert bad.headers["content-range"] == "bytes */10"
    assert bad.json()["error"] == "range_not_satisfiable"
