"""Every master route with its status codes and headers, against a real cluster."""

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cluster import Cluster, MakeCluster, wait_until


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def assert_json_error(response: httpx.Response, status: int, error: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    if error is not None:
        assert body["error"] == error


@pytest.fixture
def cluster(request: pytest.FixtureRequest, shared: Cluster, make_cluster: MakeCluster) -> Cluster:
    """This module's shared cluster (its tests use keys of their own), or a cluster of its
    own for a test marked ``empty_cluster`` (one that counts every blob or lists every key)."""
    return make_cluster() if request.node.get_closest_marker("empty_cluster") else shared


@pytest.fixture
def http(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        yield client


def test_put_creates_then_replaces_with_etag(http: httpx.Client) -> None:
    first = http.put("/a/b", content=b"one")
    assert first.status_code == 201
    assert first.headers["etag"] == f'"{md5(b"one")}"'
    second = http.put("/a/b", content=b"two")
    assert second.status_code == 204
    assert second.headers["etag"] == f'"{md5(b"two")}"'
    assert http.get("/a/b", follow_redirects=True).content == b"two"


def test_a_key_with_a_newline_is_stored_listed_read_and_deleted(http: httpx.Client) -> None:
    # aiohttp's route pattern ".*" stops at a newline: such keys once got the router's 404.
    assert http.put("/line%0Abreak", content=b"two\nlines").status_code == 201
    got = http.get("/line%0Abreak", follow_redirects=True)
    assert got.status_code == 200 and got.content == b"two\nlines"
    assert http.get("/line", params={"list": ""}).json()["keys"] == ["/line\nbreak"]
    assert http.delete("/line%0Abreak").status_code == 204
    assert http.head("/line%0Abreak").status_code == 404


def test_create_only_put(http: httpx.Client) -> None:
    assert http.put("/c", content=b"x", headers={"If-None-Match": "*"}).status_code == 201
    response = http.put("/c", content=b"y", headers={"If-None-Match": "*"})
    assert_json_error(response, 412, "key_exists")
    assert http.get("/c", follow_redirects=True).content == b"x"


def test_put_if_none_match_an_etag_is_refused_only_when_it_is_the_live_one(
    http: httpx.Client,
) -> None:
    tag = http.put("/c-etag", content=b"x").headers["ETag"]
    refused = http.put("/c-etag", content=b"y", headers={"If-None-Match": f'"other", {tag}'})
    assert_json_error(refused, 412, "key_exists")
    assert (
        http.put("/c-etag", content=b"z", headers={"If-None-Match": '"other"'}).status_code == 204
    )
    assert http.get("/c-etag", follow_redirects=True).content == b"z"


def test_get_redirects_to_a_replica_with_checksum_headers(
    http: httpx.Client, cluster: Cluster
) -> None:
    value = os.urandom(100_000)  # over the cache's value limit: small values come from the master
    http.put("/r", content=value)
    response = http.get("/r")
    assert response.status_code == 302
    location = response.headers["location"]
    assert any(location.startswith(node.url + "/blob/") for node in cluster.nodes)
    assert response.headers["etag"] == f'"{md5(value)}"'
    assert response.headers["content-md5"] == md5(value)
    worker = httpx.get(location)
    assert worker.content == value
    assert worker.headers["content-md5"] == md5(value)


@pytest.mark.parametrize("how", [{"params": {"direct": ""}}, {"headers": {"X-Kfs-Direct": "1"}}])
def test_direct_get_streams_through_the_master(http: httpx.Client, how: dict[str, Any]) -> None:
    value = os.urandom(300_000)
    http.put("/d", content=value)
    response = http.get("/d", **how)
    assert response.status_code == 200
    assert response.content == value
    assert response.headers["content-md5"] == md5(value)


def test_direct_get_passes_ranges(http: httpx.Client) -> None:
    http.put("/dr", content=b"0123456789")
    response = http.get("/dr", params={"direct": ""}, headers={"Range": "bytes=2-4"})
    assert response.status_code == 206
    assert response.content == b"234"
    assert response.headers["content-range"] == "bytes 2-4/10"


def test_head_is_answered_by_the_master(http: httpx.Client) -> None:
    value = os.urandom(1000)
    http.put("/h", content=value)
    response = http.head("/h")
    assert response.status_code == 200
    assert response.headers["content-length"] == "1000"
    assert response.headers["content-md5"] == md5(value)
    assert response.headers["etag"] == f'"{md5(value)}"'
    assert "location" not in response.headers


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_missing_key_is_404_with_empty_body(http: httpx.Client, method: str) -> None:
    response = http.request(method, "/missing")
    assert response.status_code == 404
    assert response.headers["content-length"] == "0"
    assert response.content == b""


def test_empty_value_round_trips(http: httpx.Client) -> None:
    assert http.put("/empty", content=b"").status_code == 201
    assert http.head("/empty").headers["content-length"] == "0"
    assert http.get("/empty", follow_redirects=True).content == b""


def test_conditional_get_answers_304_at_the_master(http: httpx.Client) -> None:
    http.put("/cond", content=b"abc")
    tag = f'"{md5(b"abc")}"'
    assert http.get("/cond", headers={"If-None-Match": tag}).status_code == 304
    other = http.get("/cond", headers={"If-None-Match": '"other"'})
    assert (other.status_code, other.content) == (200, b"abc")
    large = os.urandom(100_000)
    http.put("/cond-large", content=large)
    assert http.get("/cond-large", headers={"If-None-Match": f'"{md5(large)}"'}).status_code == 304
    assert http.get("/cond-large", headers={"If-None-Match": '"other"'}).status_code == 302


@pytest.mark.parametrize("size", [10, 200_000])  # inline in LevelDB, and file-backed
def test_worker_serves_single_ranges_and_conditional_gets(
    http: httpx.Client, cluster: Cluster, size: int
) -> None:
    value = os.urandom(size)
    http.put("/range", content=value)
    location = cluster.blob_url("/range")
    cases = {
        "bytes=2-5": value[2:6],
        "bytes=4-": value[4:],
        "bytes=-3": value[-3:],
        f"bytes=0-{size + 100}": value,
    }
    for header, expected in cases.items():
        response = httpx.get(location, headers={"Range": header}, auth=cluster.auth)
        assert response.status_code == 206, header
        assert response.content == expected, header
        first = size - len(expected)
        if header.startswith(("bytes=-", "bytes=4")):
            first = size - len(expected)
        else:
            first = int(header[6:].split("-")[0])
        assert (
            response.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{size}"
        )
    for bad in ("bytes=x-1", "bytes=1-2,4-5", "bytes=5-2"):
        assert_json_error(httpx.get(location, headers={"Range": bad}, auth=cluster.auth), 416)
    for ignored in ("items=0-1", ""):  # an unknown unit, or none: served whole (RFC 9110)
        whole = httpx.get(location, headers={"Range": ignored}, auth=cluster.auth)
        assert whole.status_code == 200 and whole.content == value
    unsatisfiable = httpx.get(location, headers={"Range": f"bytes={size}-"}, auth=cluster.auth)
    assert_json_error(unsatisfiable, 416)
    assert unsatisfiable.headers["content-range"] == f"bytes */{size}"
    tag = f'"{md5(value)}"'
    assert httpx.get(location, headers={"If-None-Match": tag}, auth=cluster.auth).status_code == 304
    assert httpx.get(location, auth=cluster.auth).content == value


@pytest.mark.empty_cluster
def test_delete_removes_from_index_and_replicas(http: httpx.Client, cluster: Cluster) -> None:
    http.put("/del", content=b"bye")
    assert all(len(cluster.worker_blobs(node)) == 1 for node in cluster.nodes)
    assert http.delete("/del").status_code == 204
    assert http.get("/del").status_code == 404
    # The copies are the reaper's from the acknowledgement on: deleted in the background.
    wait_until(
        lambda: all(cluster.worker_blobs(node) == [] for node in cluster.nodes),
        "the workers delete the copies",
    )
    assert http.delete("/del").status_code == 404


@pytest.mark.empty_cluster
def test_unlink_hides_a_key_but_keeps_its_bytes(http: httpx.Client, cluster: Cluster) -> None:
    http.put("/u/1", content=b"kept")
    http.put("/u/2", content=b"shown")
    assert http.request("UNLINK", "/u/1").status_code == 204
    assert http.get("/u/1").status_code == 404
    assert http.head("/u/1").status_code == 404
    assert http.get("/u?list").json() == {"keys": ["/u/2"], "next": ""}
    assert http.get("/?unlinked").json() == {"keys": ["/u/1"], "next": ""}
    assert all(len(cluster.worker_blobs(node)) == 2 for node in cluster.nodes)
    assert http.request("UNLINK", "/u/1").status_code == 404
    assert http.request("UNLINK", "/never").status_code == 404
    assert http.delete("/u/1").status_code == 204
    assert http.get("/?unlinked").json() == {"keys": [], "next": ""}


@pytest.mark.empty_cluster
def test_put_over_an_unlinked_key_makes_it_live_again(http: httpx.Client) -> None:
    http.put("/again", content=b"old")
    http.request("UNLINK", "/again")
    assert http.put("/again", content=b"new").status_code == 201
    assert http.get("/?unlinked").json()["keys"] == []
    assert http.get("/again", follow_redirects=True).content == b"new"


@pytest.mark.empty_cluster
def test_listing_pages_in_byte_order(http: httpx.Client) -> None:
    keys = ["/l/a", "/l/b", "/l/b/c", "/l/z", "/l/\u00e9", "/l/\u4e2d", "/m/x"]
    for key in keys:
        assert http.put(key, content=key.encode()).status_code == 201
    under_l = sorted((k for k in keys if k.startswith("/l")), key=lambda k: k.encode())
    assert http.get("/l?list").json() == {"keys": under_l, "next": ""}
    page = http.get("/l/?list&limit=2").json()
    assert page == {"keys": under_l[:2], "next": under_l[2]}
    page = http.get("/l/", params={"list": "", "limit": 2, "start": page["next"]}).json()
    assert page == {"keys": under_l[2:4], "next": under_l[4]}
    page = http.get("/l/", params={"list": "", "limit": 2, "start": page["next"]}).json()
    assert page == {"keys": under_l[4:], "next": ""}
    assert http.get("/?list").json()["keys"] == sorted(keys, key=lambda k: k.encode())
    assert http.get("/nothing?list").json() == {"keys": [], "next": ""}


@pytest.mark.parametrize(
    "query",
    [
        "list&limit=0",
        "list&limit=abc",
        "list&limit=100000",
        "list&limit=-1",
        "list&start=" + "x" * 1100,
    ],
)
def test_bad_list_parameters_are_400(http: httpx.Client, query: str) -> None:
    assert_json_error(http.get("/?" + query), 400, "bad_parameter")


def test_cluster_describes_master_and_workers(http: httpx.Client, cluster: Cluster) -> None:
    info = http.get("/_cluster").json()
    assert info["replicas"] == 3
    assert info["master"]["id"].startswith("m-")
    assert [w["index"] for w in info["workers"]] == [0, 1, 2]
    for worker in info["workers"]:
        assert worker["state"] == "up"
        assert worker["url"] in {node.url for node in cluster.nodes}
        assert {"last_heartbeat", "bytes_used", "free_bytes", "key_count"} <= set(worker)
    assert http.get("/health").json()["status"] == "ok"
    for node in cluster.nodes:
        assert httpx.get(f"{node.url}/health").json()["status"] == "ok"


@pytest.mark.empty_cluster
def test_key_too_long_or_not_utf8_is_400(http: httpx.Client) -> None:
    assert_json_error(http.put("/" + "k" * 1024, content=b"x"), 400, "bad_key")
    assert http.put("/" + "k" * 1023, content=b"x").status_code == 201
    raw = httpx.Request("PUT", cluster_url(http) + "/%FF%FE", content=b"x")
    assert_json_error(http.send(raw), 400, "bad_key")
    assert http.get("/?list").json()["keys"] == ["/" + "k" * 1023]


def cluster_url(http: httpx.Client) -> str:
    return str(http.base_url).rstrip("/")


def test_unsupported_method_is_405_with_allow(http: httpx.Client) -> None:
    response = http.request("PATCH", "/k", content=b"x")
    assert_json_error(response, 405, "method_not_allowed")
    assert "PUT" in response.headers["allow"]
    assert_json_error(http.post("/health"), 405)


def test_reserved_paths_are_not_keys(http: httpx.Client) -> None:
    assert_json_error(http.put("/_mine", content=b"x"), 404, "no_such_route")
    assert http.put("/put/_mine", content=b"x").status_code == 201
    assert http.get("/get/_mine").content == b"x"


def test_body_over_the_limit_is_413_and_stores_nothing(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=["--max-value-bytes", "1000"])
    with httpx.Client(base_url=cluster.url) as http:
        assert_json_error(http.put("/big", content=b"x" * 1001), 413, "value_too_large")

        def chunked() -> Iterator[bytes]:
            for _ in range(20):
                yield b"y" * 100

        assert_json_error(http.put("/big", content=chunked()), 413, "value_too_large")
        assert http.put("/ok", content=b"z" * 1000).status_code == 201
        assert http.get("/?list").json()["keys"] == ["/ok"]
    assert all(len(cluster.worker_blobs(node)) == 1 for node in cluster.nodes)
