"""Clone: a new worker copies an existing worker's blobs over HTTP, and the master adopts them."""

import os

import httpx
from cluster import MakeCluster


def test_a_clone_holds_and_serves_the_same_data(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    values = {f"/cl/{i}": os.urandom(70_000 + i * 1000) for i in range(15)}  # redirected reads
    values.update({f"/cl/small/{i}": os.urandom(100 + i) for i in range(10)})  # inline blobs
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        for key, value in values.items():
            assert http.put(key, content=value).status_code == 201
    source = cluster.nodes[1]
    source_index = next(
        w["index"] for w in cluster.cluster_info()["workers"] if w["url"] == source.url
    )
    copy = cluster.add_worker("--clone-from", str(source_index))
    cluster.wait_workers_up(4)
    original = {b["blob"]: b["md5"] for b in cluster.worker_blobs(source)}
    cloned = {b["blob"]: b["md5"] for b in cluster.worker_blobs(copy)}
    assert cloned == original and len(cloned) == len(values)
    for blob in cloned:
        assert httpx.get(f"{copy.url}/blob/{blob}", auth=cluster.auth).status_code == 200
    # The master knows: with every other worker stopped, reads are served by the clone.
    for node in cluster.nodes[:3]:
        node.stop()
    for index in range(3):
        cluster.wait_worker_state(index, "down")
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for key, value in values.items():
            got = http.get(key, params={"direct": ""})
            assert got.status_code == 200 and got.content == value, key
    # A restarted clone does not clone again.
    copy.stop()
    copy.start()
    cluster.wait_worker_state(3, "up")
    assert "--clone-from ignored" in (cluster.root / "worker-3.log").read_text()
