"""TLS with real handshakes (issue 9): a cluster serving HTTPS only, with certificates from a
local CA (kittenfs.localca.local_ca, as ``kittenfs up --tls`` makes); clients that trust the CA
read and write through every path, and clients (or workers) that trust another CA are
refused at the handshake."""

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster import Cluster, running_up, started

import kittenfs
from kittenfs import ServerError
from kittenfs.localca import local_ca
from kittenfs.tls import client_context


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with started(tmp_path_factory.mktemp("tls"), tls=True) as cluster:
        yield cluster


def test_every_process_serves_https(secure: Cluster) -> None:
    assert secure.url.startswith("https://")
    assert all(node.url.startswith("https://") for node in secure.nodes)
    assert all(w["url"].startswith("https://") for w in secure.cluster_info()["workers"])


def test_a_client_that_trusts_the_ca_uses_every_path(secure: Cluster) -> None:
    value = os.urandom(300_000)
    with kittenfs.Client(secure.url, ca=secure.ca) as client:
        client.put("/tls/v", value)
        assert client.get("/tls/v") == value  # redirected to a worker, over HTTPS
        with client.open("/tls/v") as reader:
            assert reader.read() == value
    with httpx.Client(base_url=secure.url, verify=secure.verify, timeout=30) as http:
        assert http.get("/tls/v", params={"direct": ""}).content == value
        location = http.get("/tls/v").headers["location"]
        assert location.startswith("https://")
    curl = subprocess.run(
        ["curl", "-sS", "-L", "--cacert", str(secure.ca), f"{secure.url}/tls/v"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert curl.returncode == 0 and curl.stdout == value, curl.stderr


def test_a_client_that_trusts_another_ca_is_refused_at_the_handshake(
    secure: Cluster, tmp_path: Path
) -> None:
    other = local_ca(tmp_path / "other")
    with kittenfs.Client(secure.url, ca=other.ca) as client, pytest.raises(ServerError) as err:
        client.head("/tls/v")
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{secure.url}/health", verify=client_context(other.ca))
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{secure.url}/health")  # the system's CAs do not know the local one
    curl = subprocess.run(
        ["curl", "-sS", f"{secure.url}/health"], capture_output=True, timeout=60, check=False
    )
    assert curl.returncode != 0


def test_plain_http_to_a_tls_port_gets_no_answer(secure: Cluster) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(secure.url.replace("https://", "http://") + "/health", timeout=10)


def test_a_worker_that_does_not_trust_the_masters_certificate_never_joins(
    secure: Cluster, tmp_path: Path
) -> None:
    other = local_ca(tmp_path / "other")
    own = local_ca(secure.root / "tls")
    node = secure.add_worker(
        "--tls-cert", str(own.cert), "--tls-key", str(own.key), "--ca", str(other.ca)
    )
    try:
        deadline = time.monotonic() + 60
        log = ""
        while "CERTIFICATE_VERIFY_FAILED" not in log:
            assert time.monotonic() < deadline, log
            time.sleep(0.2)
            log = node.log.read_text()
        assert len(secure.cluster_info()["workers"]) == 3
    finally:
        node.stop()
        secure.nodes.remove(node)


def test_kittenfs_up_tls_makes_a_ca_and_serves_https(tmp_path: Path) -> None:
    with running_up(tmp_path, "--tls", until="TLS is on") as up:
        ca = tmp_path / "data" / "tls" / "ca.pem"
        assert (
            ca.exists() and (tmp_path / "data" / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
        )
        with kittenfs.Client(f"https://127.0.0.1:{up.port}", ca=ca) as client:
            client.put("/up/tls", b"over https")
            assert client.get("/up/tls") == b"over https"
