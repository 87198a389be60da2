"""The cluster's own trust (issue 9): the attacks of items 1-3, replayed against real
processes, now get the documented refusal while the cluster keeps serving; a worker binds
to its first cluster; blobs are served only on links the master signed."""

import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cluster import Cluster, MakeCluster
from peers import worker_peers

import kittenfs
from kittenfs.placement import blob_id


def wait_until(
    condition: Callable[[], object], timeout: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.1)


def writes_work(cluster: Cluster, n: int = 5) -> None:
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        for i in range(n):
            answer = http.put(f"/still/{i}", content=os.urandom(1000 + i))
            assert answer.status_code in (201, 204), answer.text


def test_registration_and_heartbeats_without_the_secret_get_401_and_change_nothing(
    cluster: Cluster,
) -> None:
    """Attack 1: an unauthenticated registration naming an existing worker's id at a dead
    address once made every PUT fail with 503."""
    victim = cluster.cluster_info()["workers"][0]
    for path, body in (
        ("register", {"id": victim["id"], "url": "http://127.0.0.1:9"}),
        ("heartbeat", {"id": victim["id"], "stats": {}}),
        ("corrupt", {"id": victim["id"], "blobs": []}),
    ):
        answer = httpx.post(f"{cluster.url}/_workers/{path}", json=body)
        assert answer.status_code == 401 and answer.json()["error"] == "cluster_auth_required"
    forged = httpx.post(
        f"{cluster.url}/_workers/register",
        json={"id": victim["id"], "url": "http://127.0.0.1:9"},
        headers={"X-Kfs-Cluster": f"{int(time.time())}.{'0' * 64}"},
    )
    assert forged.status_code == 401
    assert cluster.cluster_info()["workers"][0]["url"] == victim["url"]
    writes_work(cluster)


def test_even_a_member_cannot_point_a_worker_at_an_address_that_is_not_it(cluster: Cluster) -> None:
    """Signed with the secret, a registration that moves a worker to an address where it
    does not answer with its own id is refused (409), and nothing changes."""
    victim = cluster.cluster_info()["workers"][1]
    with worker_peers(1) as peers:  # answers /health, as another worker
        for url in ("http://127.0.0.1:9", peers[0][1]):
            answer = httpx.post(
                f"{cluster.url}/_workers/register",
                auth=cluster.auth,
                json={"id": victim["id"], "url": url},
            )
            assert answer.status_code == 409 and answer.json()["error"] == "unverified_url"
    assert cluster.cluster_info()["workers"][1]["url"] == victim["url"]
    writes_work(cluster)


def test_a_forged_blob_never_reaches_a_reader(cluster: Cluster) -> None:
    """Attack 2: other bytes PUT straight to a worker under a live blob id were then served.
    Unsigned they are refused (401); even signed, a blob id never takes other bytes (409)."""
    value = os.urandom(100_000)
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        assert http.put("/forge/me", content=value).status_code == 201
        location = http.get("/forge/me").headers["location"]
    worker = location.split("/blob/")[0]
    blob = urlsplit(location).path.rsplit("/", 1)[1]
    headers = {"X-Kfs-Key": "%2Fforge%2Fme", "X-Kfs-Version": blob.split("-")[1]}
    forged = os.urandom(100_000)
    answer = httpx.put(f"{worker}/blob/{blob}", content=forged, headers=headers)
    assert answer.status_code == 401
    answer = httpx.put(f"{worker}/blob/{blob}", content=forged, headers=headers, auth=cluster.auth)
    assert answer.status_code == 409 and answer.json()["error"] == "blob_exists"
    for method in ("DELETE",):
        assert httpx.request(method, f"{worker}/blob/{blob}").status_code == 401
    assert httpx.post(f"{worker}/batch", content=b"\x00\x00\x00\x02{}").status_code == 401
    assert httpx.get(f"{worker}/blobs").status_code == 401
    with kittenfs.Client(cluster.url) as client:
        for _ in range(30):
            assert client.get("/forge/me") == value
    for _ in range(20):
        assert httpx.get(f"{cluster.url}/forge/me", params={"direct": ""}).content == value


def test_blobs_are_served_only_on_a_link_the_master_signed(cluster: Cluster) -> None:
    value = os.urandom(100_000)
    httpx.put(f"{cluster.url}/linked", content=value)
    location = httpx.get(f"{cluster.url}/linked").headers["location"]
    assert httpx.get(location).content == value  # what curl -L does
    bare = location.split("?")[0]
    answer = httpx.get(bare)
    assert answer.status_code == 401 and answer.json()["error"] == "link_required"
    query = parse_qs(urlsplit(location).query)
    expired = dict(query, **{"kfs-expires": [str(int(time.time()) - 10)]})
    assert httpx.get(bare, params={k: v[0] for k, v in expired.items()}).status_code == 403
    other = location.replace(bare.rsplit("/", 1)[1], blob_id("/other", "0" * 24))
    assert httpx.get(other).status_code == 403  # the signature names one blob


def test_a_public_reads_worker_serves_blobs_without_a_link(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(worker_args=["--public-reads"])
    value = os.urandom(100_000)
    httpx.put(f"{cluster.url}/public", content=value)
    bare = httpx.get(f"{cluster.url}/public").headers["location"].split("?")[0]
    assert httpx.get(bare).content == value
    assert httpx.delete(bare).status_code == 401  # writes still need the secret


def test_a_worker_of_one_cluster_is_refused_by_another_and_keeps_its_blobs(
    make_cluster: MakeCluster,
) -> None:
    """Attack 3: a worker restarted with --master pointing at another cluster's master was
    taken in, and that cluster's gc deleted every blob it held for its own cluster."""
    home = make_cluster()
    values = {f"/home/{i}": os.urandom(50_000 + i) for i in range(8)}
    for key, value in values.items():
        assert httpx.put(f"{home.url}{key}", content=value).status_code == 201
    other = make_cluster(workers=1)
    wanderer = home.nodes[2]
    before = home.worker_blobs(wanderer)
    wanderer.stop()
    # The same secret (the attacker's best case): it is the cluster id that tells them apart.
    (other.root / "cluster.secret").write_text((home.root / "cluster.secret").read_text())
    other.master.stop()
    other.master.start()
    other.wait_workers_up(0)
    wanderer.args[wanderer.args.index("--master") + 1] = other.url
    wanderer.start()
    wait_until(lambda: not wanderer.alive(), what="the worker refusing the other cluster")
    log = (home.root / "worker-2.log").read_text()
    assert "belongs to cluster" in log and "stopping" in log
    assert wanderer.popen is not None and wanderer.popen.returncode == 0
    assert len(other.cluster_info()["workers"]) == 1  # never registered there
    gc = httpx.post(f"{other.url}/_jobs/gc", json={"grace": 0})
    assert gc.status_code == 202
    wanderer.args[wanderer.args.index("--master") + 1] = home.url
    wanderer.start()
    home.wait_workers_up(3)
    assert home.worker_blobs(wanderer) == before  # nothing deleted
    with kittenfs.Client(home.url) as client:
        for key, value in values.items():
            assert client.get(key) == value


def test_a_worker_with_the_wrong_secret_stops_with_one_line(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    cluster = make_cluster(workers=1)
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-cluster-secret-at-all")
    node = cluster.add_worker("--cluster-secret-file", str(wrong))
    wait_until(lambda: not node.alive(), what="the worker stopping")
    assert "refused this worker's cluster secret" in node.log.read_text()
    assert len(cluster.cluster_info()["workers"]) == 1


def test_a_worker_with_a_secret_refuses_a_master_without_one(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    cluster = make_cluster(workers=0, secret=False)
    secret = tmp_path / "s"
    secret.write_text("a-secret-the-master-does-not-have")
    node = cluster.add_worker("--cluster-secret-file", str(secret))
    wait_until(lambda: not node.alive(), what="the worker stopping")
    assert "has no cluster secret" in node.log.read_text()


@pytest.mark.parametrize("skew", [-400, 400])
def test_a_cluster_signature_from_too_far_in_the_past_or_future_is_refused(
    cluster: Cluster, skew: int
) -> None:
    key = cluster.key
    assert key is not None
    target = "/_workers/heartbeat"
    header = key.sign_request("POST", target, time.time() + skew)
    answer = httpx.post(
        f"{cluster.url}{target}", headers={"X-Kfs-Cluster": header}, json={"id": "w-x", "stats": {}}
    )
    assert answer.status_code == 401
