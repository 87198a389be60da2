"""Uploads in parts (/_uploads, master/uploads.py) against real clusters: parts in any order
and sent again, the value stored whole and the upload gone; a part missing; who may take
part; abort; abandoned uploads and orphan parts swept."""

import hashlib
import os
import time
from typing import Any

import httpx
import pytest
from cluster import Cluster, MakeCluster

from kittenfs.keys import key_path

ADMIN = "uploads-admin-token-" + "z" * 12


def start(cluster: Cluster, key: str, headers: dict[str, str] | None = None) -> str:
    answer = httpx.post(
        f"{cluster.url}/_uploads", json={"key": key}, headers=headers or cluster.headers
    )
    assert answer.status_code == 201, answer.text
    upload: str = answer.json()["upload"]
    return upload


def part(cluster: Cluster, upload: str, number: int, data: bytes, **kw: Any) -> httpx.Response:
    headers = kw.get("headers", cluster.headers)
    return httpx.put(
        f"{cluster.url}/_uploads/{upload}/{number}", content=data, headers=headers, timeout=30
    )


def test_parts_in_any_order_become_one_value(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    chunks = [os.urandom(3 * 1024 * 1024), os.urandom(1024 * 1024 + 3), b"tail"]
    upload = start(cluster, "/big/file.bin")
    assert part(cluster, upload, 3, chunks[2]).status_code == 201
    assert part(cluster, upload, 1, b"wrong bytes, sent again below").status_code == 201
    assert part(cluster, upload, 2, chunks[1]).json()["md5"] == hashlib.md5(chunks[1]).hexdigest()
    assert part(cluster, upload, 1, chunks[0]).status_code == 201
    listed = httpx.get(f"{cluster.url}/_uploads/{upload}").json()
    assert listed["key"] == "/big/file.bin"
    assert [(p["part"], p["size"]) for p in listed["parts"]] == [
        (i + 1, len(c)) for i, c in enumerate(chunks)
    ]
    done = httpx.post(f"{cluster.url}/_uploads/{upload}", json={"parts": 3}, timeout=60)
    whole = b"".join(chunks)
    assert done.status_code == 201, done.text
    assert done.json() == {
        "key": "/big/file.bin",
        "size": len(whole),
        "md5": hashlib.md5(whole).hexdigest(),
    }
    read = httpx.get(f"{cluster.url}/big/file.bin?direct", timeout=30)
    assert read.content == whole
    # Sent again (its answer lost, say), the complete answers as it did; the parts are gone.
    again = httpx.post(f"{cluster.url}/_uploads/{upload}", json={"parts": 3}, timeout=60)
    assert (again.status_code, again.json()) == (201, done.json())
    after = httpx.get(f"{cluster.url}/_uploads/{upload}").json()
    assert after["parts"] == [] and after["completed"]["md5"] == hashlib.md5(whole).hexdigest()
    leftovers = httpx.get(f"{cluster.url}{key_path('/_uploads/')}?list").json()["keys"]
    assert leftovers == [f"/_uploads/{upload}"]  # the completed mark, until the sweep
    late = part(cluster, upload, 4, b"late")
    assert late.status_code == 409 and late.json()["error"] == "upload_ending"


def test_a_missing_part_or_a_wrong_count_is_refused(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(workers=1, replicas=1)
    upload = start(cluster, "/gap")
    part(cluster, upload, 1, b"a")
    part(cluster, upload, 3, b"c")
    gap = httpx.post(f"{cluster.url}/_uploads/{upload}", json={"parts": 3})
    assert gap.status_code == 400 and gap.json()["error"] == "missing_part"
    assert "missing [2]" in gap.json()["detail"]
    more = httpx.post(f"{cluster.url}/_uploads/{upload}", json={"parts": 1})
    assert more.status_code == 400  # part 3 is stored too: not what the client meant
    for bad in ({"parts": 0}, {"parts": "3"}, {}):
        assert httpx.post(f"{cluster.url}/_uploads/{upload}", json=bad).status_code == 400
    assert part(cluster, upload, 0, b"x").status_code == 400
    assert part(cluster, upload, 10_001, b"x").status_code == 400
    assert httpx.get(f"{cluster.url}/gap").status_code == 404  # nothing stored meanwhile
    assert httpx.delete(f"{cluster.url}/_uploads/{upload}").status_code == 204
    assert httpx.get(f"{cluster.url}/_uploads/{upload}").status_code == 404
    assert httpx.get(f"{cluster.url}/_uploads/nope").status_code == 404


def test_only_its_starter_with_write_access_takes_part(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(token=ADMIN, workers=1, replicas=1)

    def credential(role: str, prefix: str) -> dict[str, str]:
        made = httpx.post(
            f"{cluster.url}/_keys", json={"role": role, "prefix": prefix}, headers=cluster.headers
        ).json()
        return {"Authorization": f"Bearer {made['token']}"}

    alice, bob, reader = (
        credential("write", "/team/"),
        credential("write", "/team/"),
        credential("read", "/"),
    )
    assert httpx.post(f"{cluster.url}/_uploads", json={"key": "/team/x"}).status_code == 401
    huge = httpx.post(f"{cluster.url}/_uploads", content=b"{" + b" " * 70_000 + b"}", headers=alice)
    assert huge.status_code == 413  # a JSON body of a step is small
    refused = httpx.post(f"{cluster.url}/_uploads", json={"key": "/team/x"}, headers=reader)
    assert refused.status_code == 403
    outside = httpx.post(f"{cluster.url}/_uploads", json={"key": "/other/x"}, headers=alice)
    assert outside.status_code == 403
    upload = start(cluster, "/team/x", alice)
    assert part(cluster, upload, 1, b"mine", headers=alice).status_code == 201
    theirs = part(cluster, upload, 1, b"theirs", headers=bob)
    assert theirs.status_code == 403 and theirs.json()["error"] == "not_your_upload"
    assert (
        httpx.post(f"{cluster.url}/_uploads/{upload}", json={"parts": 1}, headers=bob).status_code
        == 403
    )
    done = httpx.post(f"{cluster.url}/_uploads/{upload}", json={"parts": 1}, headers=alice)
    assert done.status_code == 201
    assert httpx.get(f"{cluster.url}/team/x", headers=alice).content == b"mine"


def test_abandoned_uploads_are_swept(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(workers=1, replicas=1, master_args=["--upload-abandoned-after", "2"])
    upload = start(cluster, "/left")
    part(cluster, upload, 1, b"forgotten")
    deadline = time.monotonic() + 60
    while httpx.get(f"{cluster.url}/_uploads/{upload}").status_code != 404:
        assert time.monotonic() < deadline, "the abandoned upload is still there"
        time.sleep(0.2)
    while httpx.get(f"{cluster.url}{key_path('/_uploads/')}?list").json()["keys"]:
        assert time.monotonic() < deadline, "its part is still there"
        time.sleep(0.2)
    assert httpx.get(f"{cluster.url}/left").status_code == 404
    # A part whose upload's record is gone (deleted as a key, say) is an orphan: swept too.
    orphaned = start(cluster, "/orphan")
    part(cluster, orphaned, 1, b"alone")
    assert httpx.delete(f"{cluster.url}{key_path('/_uploads/' + orphaned)}").status_code == 204
    while httpx.get(f"{cluster.url}{key_path('/_uploads/')}?list").json()["keys"]:
        assert time.monotonic() < deadline + 60, "the orphan part is still there"
        time.sleep(0.2)


@pytest.mark.parametrize("method", ["PUT", "GET"])
def test_the_routes_answer_json_errors(make_cluster: MakeCluster, method: str) -> None:
    cluster = make_cluster(workers=1, replicas=1)
    answer = httpx.request(method, f"{cluster.url}/_uploads")
    assert answer.status_code == 405 and answer.json()["error"] == "method_not_allowed"


def test_a_start_with_a_bad_body_is_refused_and_stores_nothing(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(workers=1, replicas=1)
    for body, error in (
        (b"not json", "bad_json"),
        (b"[1]", "bad_json"),
        (b'{"key": 5}', "bad_option"),
        (b'{"key": "no-slash"}', "bad_key"),
        (b"{}", "bad_option"),
    ):
        answer = httpx.post(f"{cluster.url}/_uploads", content=body)
        assert (answer.status_code, answer.json()["error"]) == (400, error), body
    assert httpx.get(f"{cluster.url}{key_path('/_uploads/')}?list").json()["keys"] == []
