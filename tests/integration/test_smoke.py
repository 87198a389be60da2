"""A first end-to-end round trip through a real cluster."""

import httpx
from cluster import Cluster


def test_put_then_get_follows_redirect_to_a_worker(cluster: Cluster) -> None:
    value = b"world" * 20_000  # a large value: small ones are answered by the master itself
    assert httpx.put(f"{cluster.url}/hello", content=value).status_code == 201
    response = httpx.get(f"{cluster.url}/hello", follow_redirects=True)
    assert response.content == value
    assert response.history[0].status_code == 302
