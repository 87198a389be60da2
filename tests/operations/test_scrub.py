"""Scrub: workers read back their blobs in the background and report corrupt ones, which the
master repairs without being asked."""

import os
import time

import httpx
from cluster import MakeCluster


def test_a_corrupt_blob_found_by_the_scrub_is_repaired(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(worker_args=["--scrub-rate", "100", "--scrub-interval", "0.2"])
    values = {f"/scrub/{i}": os.urandom(80_000 + i) for i in range(8)}
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for key, value in values.items():
            assert http.put(key, content=value).status_code == 201
        path = cluster.blob_file(2, "/scrub/5")
        with open(path, "r+b") as handle:
            handle.seek(-100, os.SEEK_END)
            handle.write(b"rot" * 10)
        blob = next(
            b["blob"] for b in cluster.worker_blobs(cluster.nodes[2]) if b["key"] == "/scrub/5"
        )
        deadline = time.monotonic() + 60
        while not httpx.get(f"{cluster.nodes[2].url}/check/{blob}", auth=cluster.auth).json()["ok"]:
            assert time.monotonic() < deadline, cluster.cluster_info()["repairs"]
            time.sleep(0.2)
        repairs = cluster.cluster_info()["repairs"]
        assert repairs["found"]["reported"] >= 1 and repairs["fixed"]["copies"] >= 1, repairs
        assert "corrupt" in (cluster.root / "worker-2.log").read_text()
        for key, value in values.items():
            assert http.get(key).content == value
