"""A first end-to-end round trip through a real cluster."""

import httpx


def test_put_then_get_follows_redirect_to_a_worker(cluster):
    assert httpx.put(f"{cluster.url}/hello", content=b"world").status_code == 201
    response = httpx.get(f"{cluster.url}/hello", follow_redirects=True)
    assert response.content == b"world"
    assert response.history[0].status_code == 302
