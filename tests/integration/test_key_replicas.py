"""GET /<key>?replicas (the console's key details) and the workers' state history in
/_cluster, against a real cluster with auth on."""

import time

import httpx
from cluster import MakeCluster

from kittenfs.keys import key_path

ADMIN = "replicas-admin-token-" + "y" * 12


def test_replicas_show_each_copy_and_the_history_each_change(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(token=ADMIN)
    auth = cluster.headers
    assert httpx.put(f"{cluster.url}/r/k", content=b"v" * 10, headers=auth).status_code == 201
    info = httpx.get(f"{cluster.url}/r/k?replicas", headers=auth, timeout=10).json()
    assert (info["key"], info["state"], info["size"]) == ("/r/k", "live", 10)
    assert sorted(r["worker"] for r in info["replicas"]) == [0, 1, 2]
    assert {r["state"] for r in info["replicas"]} == {"up"}
    # A reserved name is a key too, escaped as the clients escape it.
    ui = f"{cluster.url}{key_path('/ui')}"
    assert httpx.put(ui, content=b"x", headers=auth).status_code == 201
    assert httpx.get(f"{ui}?replicas", headers=auth, timeout=10).json()["key"] == "/ui"

    cluster.nodes[1].kill()
    cluster.wait_worker_state(1, "down")
    info = httpx.get(f"{cluster.url}/r/k?replicas", headers=auth, timeout=10).json()
    assert {r["worker"]: r["state"] for r in info["replicas"]} == {0: "up", 1: "down", 2: "up"}

    def changes() -> list[tuple[int, str]]:
        return [(e["worker"], e["state"]) for e in cluster.cluster_info()["history"]]

    deadline = time.monotonic() + 30  # the liveness check notes it within a second or so
    while (1, "down") not in changes():
        assert time.monotonic() < deadline, changes()
        time.sleep(0.1)
    history = changes()
    assert history.count((1, "down")) == 1
    assert {(w, "registered") for w in range(3)} <= set(history)


def test_replicas_need_read_and_refuse_links(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(token=ADMIN, workers=1, replicas=1)
    auth = cluster.headers
    httpx.put(f"{cluster.url}/r/k", content=b"v", headers=auth)
    assert httpx.get(f"{cluster.url}/r/k?replicas", timeout=10).status_code == 401
    missing = httpx.get(f"{cluster.url}/r/none?replicas", headers=auth, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    link = httpx.post(f"{cluster.url}/_sign", json={"key": "/r/k"}, headers=auth).json()["url"]
    assert httpx.get(link, timeout=10).status_code in (200, 302)  # the link reads the value
    refused = httpx.get(f"{link}&replicas", timeout=10)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
