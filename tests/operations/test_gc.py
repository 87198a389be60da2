"""gc: orphans (bytes no index record points to) are deleted after a grace period, and
nothing referenced is ever touched."""

import os

import httpx
from cluster import Cluster, MakeCluster
from jobs import holders, run_job

from kittenfs.placement import blob_id, new_version


def put_blob(cluster: Cluster, node_url: str, key: str, version: str, value: bytes) -> str:
    blob = blob_id(key, version)
    answer = httpx.put(
        f"{node_url}/blob/{blob}",
        content=value,
        auth=cluster.auth,
        headers={"X-Kfs-Key": key.replace("/", "%2F"), "X-Kfs-Version": version},
    )
    assert answer.status_code == 201, answer.text
    return blob


def test_gc_removes_orphans_and_nothing_else(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(workers=4)
    values = {f"/gc/{i}": os.urandom(100 + i * 9000) for i in range(12)}
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for key, value in values.items():
            assert http.put(key, content=value).status_code == 201
        assert http.put("/gc/unlinked", content=b"kept until purged").status_code == 201
        assert http.request("UNLINK", "/gc/unlinked").status_code == 204
    before = {node.url: cluster.worker_blobs(node) for node in cluster.nodes}
    held = holders(cluster, values)
    outsider = next(i for i in range(4) if i not in held["/gc/3"])  # a worker without /gc/3
    info = {w["index"]: w["url"] for w in cluster.cluster_info()["workers"]}
    live_blob = next(b for b in before[info[next(iter(held["/gc/3"]))]] if b["key"] == "/gc/3")
    orphans = [
        (info[0], put_blob(cluster, info[0], "/never/written", new_version(), b"orphan one")),
        (
            info[1],
            put_blob(cluster, info[1], "/gc/1", new_version(), os.urandom(90_000)),
        ),  # old version
        (
            info[outsider],
            put_blob(cluster, info[outsider], "/gc/3", live_blob["version"], values["/gc/3"]),
        ),  # the live version, on a non-replica
    ]
    waiting = run_job(cluster, "gc")  # the default grace: an hour
    assert waiting["found"]["orphans"] == 3 and waiting["found"]["orphans_in_grace"] == 3
    assert not waiting["fixed"]
    dry = run_job(cluster, "gc", grace=0, dry_run=True)
    assert dry["found"]["orphans"] == 3 and not dry["fixed"]
    job = run_job(cluster, "gc", grace=0)
    assert job["state"] == "done" and not job["errors"], job
    assert job["fixed"]["orphans_deleted"] == 3
    after = {node.url: cluster.worker_blobs(node) for node in cluster.nodes}
    assert after == before  # exactly the orphans went; every referenced blob stayed
    for url, blob in orphans:
        assert httpx.get(f"{url}/blob/{blob}", auth=cluster.auth).status_code == 404
    purge = run_job(cluster, "gc", grace=0, purge_unlinked=True)
    assert purge["fixed"]["unlinked_purged"] == 1 and "orphans" not in purge["found"]
    assert httpx.get(f"{cluster.url}/gc/unlinked", params={"unlinked": ""}).json()["keys"] == []
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        for key, value in values.items():
            assert http.get(key).content == value
    assert all(
        not [b for b in cluster.worker_blobs(n) if b["key"] == "/gc/unlinked"]
        for n in cluster.nodes
    )
