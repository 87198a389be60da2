"""Bad input to the admin and worker-to-master routes added for operations: each gets a
clear 4xx with a JSON error, and changes nothing."""

import httpx
import pytest
from cluster import Cluster

from kittenfs.placement import blob_id, new_version


@pytest.mark.parametrize(
    "body",
    [
        {"grace": -1},
        {"grace": "soon"},
        {"purge_unlinked": "yes"},
        {"concurrency": 2},
        {"rate": True},
    ],
)
def test_gc_refuses_bad_options(shared: Cluster, body: dict[str, object]) -> None:
    answer = httpx.post(f"{shared.url}/_jobs/gc", json=body)
    assert answer.status_code == 400 and answer.json()["error"] == "bad_option"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"id": 5, "blobs": []}, 400, "bad_report"),
        ({"id": "w-x", "blobs": [{"key": "/k"}]}, 400, "bad_report"),
        ({"id": "w-x", "blobs": "all"}, 400, "bad_report"),
        ({"id": "w-not-registered", "blobs": []}, 404, "unknown_worker"),
    ],
)
def test_corrupt_reports_are_checked(
    shared: Cluster, body: dict[str, object], status: int, error: str
) -> None:
    answer = httpx.post(f"{shared.url}/_workers/corrupt", json=body, auth=shared.auth)
    assert answer.status_code == status and answer.json()["error"] == error
    assert shared.cluster_info()["repairs"]["queued"] == 0


def test_a_report_for_an_old_version_queues_nothing(shared: Cluster) -> None:
    httpx.put(f"{shared.url}/report/k", content=b"v")
    worker_id = shared.cluster_info()["workers"][0]["id"]
    answer = httpx.post(
        f"{shared.url}/_workers/corrupt",
        auth=shared.auth,
        json={"id": worker_id, "blobs": [{"key": "/report/k", "version": new_version()}]},
    )
    assert answer.status_code == 202 and answer.json() == {"queued": 0}


def test_adopt_and_remove_name_a_worker_that_exists_and_is_in_the_right_state(
    shared: Cluster,
) -> None:
    assert httpx.post(f"{shared.url}/_workers/42/adopt").status_code == 404
    assert httpx.post(f"{shared.url}/_workers/0/adopt/x").status_code == 404
    up = httpx.delete(f"{shared.url}/_workers/0")
    assert up.status_code == 409 and up.json()["error"] == "worker_up"
    assert httpx.get(f"{shared.url}/_workers/0/adopt").status_code == 405


@pytest.mark.parametrize(("path", "status"), [("/check/not-a-blob", 400), ("/check/", 400)])
def test_the_worker_check_route_refuses_bad_ids(shared: Cluster, path: str, status: int) -> None:
    answer = httpx.get(f"{shared.nodes[0].url}{path}", auth=shared.auth)
    assert answer.status_code == status and answer.json()["error"] == "bad_blob_id"
    absent = httpx.get(
        f"{shared.nodes[0].url}/check/{blob_id('/none', new_version())}", auth=shared.auth
    )
    assert absent.status_code == 404 and absent.json()["error"] == "not_found"
