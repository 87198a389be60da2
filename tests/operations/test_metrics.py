"""GET /metrics on the master and the workers: Prometheus text whose counters move."""

import os

import httpx
from cluster import Cluster
from jobs import run_job
from prometheus_client.parser import text_string_to_metric_families


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_their_counters_move(cluster: Cluster) -> None:
    before = samples(cluster.url)
    worker_before = samples(cluster.nodes[0].url)
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for i in range(5):
            assert http.put(f"/m/{i}", content=os.urandom(100_000)).status_code == 201
            assert len(http.get(f"/m/{i}").content) == 100_000
        assert http.get("/m/missing").status_code == 404
    # Redirected reads pick a replica at random; this one is worker 0's for certain.
    assert (
        len(httpx.get(cluster.blob_url("/m/0", node=0), timeout=30, auth=cluster.auth).content)
        == 100_000
    )
    run_job(cluster, "repair")
    after = samples(cluster.url)
    worker_after = samples(cluster.nodes[0].url)
    puts = ("kittenfs_requests_total", {"route": "key", "method": "PUT", "status": "201"})
    assert value(after, puts[0], **puts[1]) - value(before, puts[0], **puts[1]) == 5
    assert value(after, "kittenfs_requests_total", route="key", method="GET", status="404") >= 1
    assert value(after, "kittenfs_bytes_in_total", route="key") >= 500_000
    assert value(after, "kittenfs_request_seconds_count", route="key") >= 11
    assert value(after, "kittenfs_workers_up") == 3
    assert value(after, "kittenfs_job_items_total") == 5 == value(after, "kittenfs_job_items_done")
    assert value(after, "kittenfs_under_replicated_keys") == 0
    blob_puts = value(
        worker_after, "kittenfs_requests_total", route="blob", method="PUT", status="201"
    )
    assert (
        blob_puts
        - value(worker_before, "kittenfs_requests_total", route="blob", method="PUT", status="201")
        == 5
    )
    assert value(worker_after, "kittenfs_blobs") >= 5
    assert value(worker_after, "kittenfs_bytes_out_total", route="blob") >= 100_000
    assert (
        value(worker_after, "kittenfs_requests_total", route="check", method="GET", status="200")
        >= 5
    )
