"""The original kittenFS routes (/put/, /get/, /delete/, /gets, /clear) against a real cluster."""

import hashlib
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster import Cluster

from kittenfs.master.garbage import REPLACED_GRACE

CLUSTER_KEYS = {"master", "replicas", "workers", "cache"}
WORKER_KEYS = {"index", "url", "state", "last_heartbeat", "bytes_used", "free_bytes", "key_count"}


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    """A key prefix of this test's own (without the leading "/"), e.g. "test_x"."""
    return re.sub(r"\W", "_", request.node.name)


def _get_redirected(url: str) -> httpx.Response:
    return httpx.get(url, follow_redirects=True, timeout=30)


def _keys(cluster: Cluster, space: str = "list", prefix: str = "/") -> list[str]:
    response = httpx.get(f"{cluster.url}{prefix}", params={space: ""}, timeout=10)
    assert response.status_code == 200, response.text
    keys: list[str] = response.json()["keys"]
    return keys


def _assert_json_error(
    response: httpx.Response, status: int, error: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail"}
    if error is not None:
        assert body["error"] == error, body
    return body


def test_form_value_is_stored_under_the_key_after_put(shared: Cluster) -> None:
    url = shared.url
    response = httpx.put(f"{url}/put/A", data={"value": "happy"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {"key": "/A", "md5": hashlib.md5(b"happy").hexdigest(), "size": 5}
    assert response.headers["etag"] == f'"{body["md5"]}"'

    read = _get_redirected(f"{url}/A")  # small: the master answers it from its cache
    assert (read.status_code, read.content, read.history) == (200, b"happy", [])

    direct = httpx.get(f"{url}/get/A", follow_redirects=False)
    assert direct.status_code == 200
    assert not direct.history
    assert direct.content == b"happy"
    assert direct.headers["content-md5"] == body["md5"]

    assert _keys(shared, prefix="/A") == ["/A"]


def test_form_value_keeps_non_ascii_text_as_utf8(shared: Cluster, ns: str) -> None:
    url = shared.url
    assert httpx.post(f"{url}/put/{ns}", data={"value": "héllo wörld"}).status_code == 201
    assert httpx.get(f"{url}/get/{ns}").content == "héllo wörld".encode()


def test_get_of_a_missing_key_is_404_on_both_routes(shared: Cluster, ns: str) -> None:
    assert httpx.get(f"{shared.url}/get/{ns}").status_code == 404
    assert httpx.get(f"{shared.url}/{ns}").status_code == 404


def test_multipart_upload_stores_the_file_bytes_not_its_name(
    shared: Cluster, ns: str, tmp_path: Path
) -> None:
    url = shared.url
    data = os.urandom(1024 * 1024 + 12345)
    # Include bytes that look like multipart delimiters inside the value.
    data = data[:1000] + b"\r\n--boundary\r\n" + data[1000:]
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    with path.open("rb") as handle:
        response = httpx.put(
            f"{url}/put/{ns}/big", files={"file": ("upload.bin", handle)}, timeout=60
        )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {"key": f"/{ns}/big", "md5": hashlib.md5(data).hexdigest(), "size": len(data)}

    direct = httpx.get(f"{url}/get/{ns}/big", timeout=60)
    assert direct.status_code == 200
    assert direct.content == data
    assert _get_redirected(f"{url}/{ns}/big").content == data
    assert _keys(shared, prefix=f"/{ns}/") == [f"/{ns}/big"]


def test_multipart_file_can_be_posted_too(shared: Cluster, ns: str) -> None:
    url = shared.url
    response = httpx.post(
        f"{url}/put/{ns}", files={"file": ("name.txt", b"contents")}, data={"comment": "ignored"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["size"] == len(b"contents")
    assert httpx.get(f"{url}/get/{ns}").content == b"contents"


def test_multipart_value_field_is_stored(shared: Cluster, ns: str) -> None:
    response = httpx.post(f"{shared.url}/put/{ns}", files={"value": (None, b"plain value")})
    assert response.status_code == 201, response.text
    assert httpx.get(f"{shared.url}/get/{ns}").content == b"plain value"


def test_urlencoded_file_field_is_rejected_as_not_uploaded(shared: Cluster, ns: str) -> None:
    response = httpx.put(f"{shared.url}/put/{ns}", data={"file": "/etc/passwd"})
    _assert_json_error(response, 400, "file_not_uploaded")
    assert httpx.get(f"{shared.url}/get/{ns}").status_code == 404
    assert _keys(shared, prefix=f"/{ns}") == []


@pytest.mark.parametrize("how", ["urlencoded", "multipart"])
def test_missing_field_is_400(shared: Cluster, ns: str, how: str) -> None:
    if how == "urlencoded":
        response = httpx.put(f"{shared.url}/put/{ns}", data={"other": "x"})
    else:
        response = httpx.put(f"{shared.url}/put/{ns}", files={"other": ("o.txt", b"x")})
    _assert_json_error(response, 400, "missing_field")
    assert _keys(shared, prefix=f"/{ns}") == []


def test_raw_body_is_stored_as_is(shared: Cluster, ns: str) -> None:
    url = shared.url
    body = b"\x00raw body, not a form\xff" * 100
    response = httpx.put(
        f"{url}/put/{ns}/A", content=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 201, response.text
    assert httpx.get(f"{url}/get/{ns}/A").content == body

    # No Content-Type at all.
    response = httpx.put(f"{url}/put/{ns}/B", content=b"no content type")
    assert response.status_code == 201, response.text
    assert _get_redirected(f"{url}/{ns}/B").content == b"no content type"


def test_raw_body_put_works_like_put_key(shared: Cluster, ns: str) -> None:
    """A raw body on /put/<key> is exactly PUT /<key>: 201 then 204, empty body, If-None-Match."""
    url = shared.url
    raw = {"Content-Type": "application/octet-stream"}
    first = httpx.put(f"{url}/put/{ns}", content=b"one", headers=raw)
    assert first.status_code == 201 and first.content == b""
    assert first.headers["etag"] == f'"{hashlib.md5(b"one").hexdigest()}"'
    second = httpx.put(f"{url}/put/{ns}", content=b"two", headers=raw)
    assert second.status_code == 204 and second.content == b""
    refused = httpx.put(f"{url}/put/{ns}", content=b"three", headers={**raw, "If-None-Match": "*"})
    _assert_json_error(refused, 412, "key_exists")
    assert httpx.get(f"{url}/get/{ns}").content == b"two"


def test_forms_ignore_if_none_match(shared: Cluster, ns: str) -> None:
    url = shared.url
    assert httpx.put(f"{url}/put/{ns}", data={"value": "one"}).status_code == 201
    again = httpx.put(f"{url}/put/{ns}", data={"value": "two"}, headers={"If-None-Match": "*"})
    assert again.status_code == 200, again.text
    assert httpx.get(f"{url}/get/{ns}").content == b"two"


def test_get_route_head_and_range(shared: Cluster, ns: str) -> None:
    url = shared.url
    data = os.urandom(100_000)
    assert (
        httpx.put(
            f"{url}/put/{ns}", content=data, headers={"Content-Type": "application/octet-stream"}
        ).status_code
        == 201
    )
    head = httpx.head(f"{url}/get/{ns}")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["content-md5"] == hashlib.md5(data).hexdigest()
    part = httpx.get(f"{url}/get/{ns}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert httpx.head(f"{url}/get/{ns}-none").status_code == 404


def test_reserved_names_are_reachable_through_seed_routes(cluster: Cluster) -> None:
    url = cluster.url
    for name, key in (("_x", "/_x"), ("put/y", "/put/y"), ("gets", "/gets"), ("clear", "/clear")):
        response = httpx.put(f"{url}/put/{name}", data={"value": name})
        assert response.status_code == 201, response.text
        assert response.json()["key"] == key
        assert httpx.get(f"{url}/get/{name}").content == name.encode()
    # Exact matches only: these are ordinary keys.
    for path in ("/put", "/get", "/gets/a", "/healthz"):
        assert httpx.put(f"{url}{path}", content=path.encode()).status_code == 201, path
    keys = _keys(cluster)
    assert keys == sorted(
        ["/_x", "/put/y", "/gets", "/clear", "/put", "/get", "/gets/a", "/healthz"], key=str.encode
    )
    assert httpx.delete(f"{url}/delete/_x").status_code == 204
    assert httpx.get(f"{url}/get/_x").status_code == 404


def test_urlencoded_form_over_16_mib_is_413(shared: Cluster, ns: str) -> None:
    body = b"value=" + b"a" * (16 * 1024 * 1024 + 10)
    response = httpx.put(
        f"{shared.url}/put/{ns}",
        content=body,
        timeout=60,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413, response.text[:200]
    assert _keys(shared, prefix=f"/{ns}") == []


def test_second_put_replaces_with_200(shared: Cluster, ns: str) -> None:
    url = shared.url
    first = httpx.put(f"{url}/put/{ns}/A", data={"value": "one"})
    assert first.status_code == 201, first.text
    second = httpx.put(f"{url}/put/{ns}/A", data={"value": "two"})
    assert second.status_code == 200, second.text
    assert second.json()["md5"] == hashlib.md5(b"two").hexdigest()
    third = httpx.put(f"{url}/put/{ns}/A", files={"file": ("f", b"three")})
    assert third.status_code == 200, third.text
    assert httpx.get(f"{url}/get/{ns}/A").content == b"three"
    assert _keys(shared, prefix=f"/{ns}/") == [f"/{ns}/A"]


def test_delete_route_is_204_then_404(shared: Cluster, ns: str) -> None:
    url = shared.url
    assert httpx.put(f"{url}/put/{ns}/A", data={"value": "happy"}).status_code == 201
    assert httpx.delete(f"{url}/delete/{ns}/A").status_code == 204
    assert httpx.get(f"{url}/get/{ns}/A").status_code == 404
    assert httpx.get(f"{url}/{ns}/A").status_code == 404
    assert httpx.delete(f"{url}/delete/{ns}/A").status_code == 404
    assert _keys(shared, prefix=f"/{ns}/") == []


def test_gets_has_the_shape_of_cluster(shared: Cluster) -> None:
    url = shared.url
    gets = httpx.get(f"{url}/gets")
    assert gets.status_code == 200
    info = gets.json()
    reference = httpx.get(f"{url}/_cluster").json()
    assert set(info) >= CLUSTER_KEYS
    assert set(info) == set(reference)
    assert info["replicas"] == reference["replicas"] == 3
    assert info["master"]["id"] == reference["master"]["id"]
    assert info["master"]["url"] == url
    assert len(info["workers"]) == 3
    for worker, ref in zip(info["workers"], reference["workers"], strict=False):
        assert set(worker) >= WORKER_KEYS
        assert set(worker) == set(ref)
        assert (worker["index"], worker["url"]) == (ref["index"], ref["url"])
    assert [w["index"] for w in info["workers"]] == [0, 1, 2]
    assert {w["url"] for w in info["workers"]} == {node.url for node in shared.nodes}
    assert all(w["state"] == "up" for w in info["workers"])


def test_wrong_method_on_gets_is_405_with_allow(shared: Cluster) -> None:
    for method in ("POST", "PUT", "DELETE"):
        response = httpx.request(method, f"{shared.url}/gets")
        _assert_json_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "GET"


def test_wrong_method_on_seed_prefixes_is_405(shared: Cluster, ns: str) -> None:
    url = shared.url
    response = httpx.delete(f"{url}/put/{ns}")
    _assert_json_error(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"PUT", "POST"}
    response = httpx.put(f"{url}/get/{ns}", content=b"x")
    _assert_json_error(response, 405)
    assert "GET" in response.headers["allow"]
    response = httpx.get(f"{url}/delete/{ns}")
    _assert_json_error(response, 405)
    assert response.headers["allow"] == "DELETE"
    assert _keys(shared, prefix=f"/{ns}") == []


def test_wrong_method_on_clear_is_405(shared: Cluster) -> None:
    response = httpx.get(f"{shared.url}/clear")
    _assert_json_error(response, 405)
    assert response.headers["allow"] == "DELETE"


# -- /clear: each test on a cluster of its own ------------------------------------------------


def _fill(cluster: Cluster) -> tuple[int, list[str]]:
    """Store a few keys (some overwritten, one unlinked); return the count and live keys."""
    for name in ("a", "b", "c"):
        assert httpx.put(f"{cluster.url}/put/{name}", data={"value": name}).status_code == 201
    assert httpx.put(f"{cluster.url}/put/a", data={"value": "a2"}).status_code == 200
    big = os.urandom(200 * 1024)  # a file-backed blob, not an inline one
    assert httpx.put(f"{cluster.url}/put/big", content=big).status_code == 201
    assert httpx.put(f"{cluster.url}/put/big", content=big[::-1]).status_code in (200, 204)
    assert httpx.put(f"{cluster.url}/gone", content=b"unlinked").status_code == 201
    assert httpx.request("UNLINK", f"{cluster.url}/gone").status_code == 204
    return 5, ["/a", "/b", "/big", "/c"]


def test_clear_needs_confirm(cluster: Cluster) -> None:
    _, live = _fill(cluster)
    for url in (
        f"{cluster.url}/clear",
        f"{cluster.url}/clear?confirm=no",
        f"{cluster.url}/clear?confirm=YES",
    ):
        _assert_json_error(httpx.delete(url), 400, "confirm_required")
    assert _keys(cluster) == live
    assert _keys(cluster, "unlinked") == ["/gone"]
    assert httpx.get(f"{cluster.url}/get/b").content == b"b"


def test_clear_deletes_every_key_and_every_blob(cluster: Cluster) -> None:
    count, _ = _fill(cluster)
    response = httpx.delete(f"{cluster.url}/clear", params={"confirm": "yes"}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": count}
    assert _keys(cluster) == []
    assert _keys(cluster, "unlinked") == []
    for name in ("a", "b", "c", "big", "gone"):
        assert httpx.get(f"{cluster.url}/get/{name}").status_code == 404

    # Versions replaced by overwrites while filling are kept for the grace period first.
    deadline = time.monotonic() + REPLACED_GRACE + 10
    while True:
        remaining = {node.name: cluster.worker_blobs(node) for node in cluster.nodes}
        if not any(remaining.values()):
            break
        assert time.monotonic() < deadline, f"blobs left on the workers: {remaining}"
        time.sleep(0.2)

    # A second clear has nothing to do.
    response = httpx.delete(f"{cluster.url}/clear?confirm=yes")
    assert response.status_code == 200
    assert response.json() == {"deleted": 0}

    # And the store is usable afterwards.
    assert httpx.put(f"{cluster.url}/put/A", data={"value": "again"}).status_code == 201
    assert httpx.get(f"{cluster.url}/get/A").content == b"again"
