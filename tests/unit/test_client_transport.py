"""The client's transport: plain HTTP never pays for a TLS context (reading the CA bundle
is a third of a CLI command's time); HTTPS still verifies."""

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from kittenfs.client import Client


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def plain_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_plain_http_makes_no_verifying_tls_context(
    plain_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> ssl.SSLContext:
        raise AssertionError("a verifying TLS context was made for plain HTTP")

    monkeypatch.setattr(ssl, "create_default_context", refuse)
    with Client(plain_server) as client:
        assert client.http.get("/anything").content == b"hello"


def test_https_still_goes_through_tls(plain_server: str) -> None:
    """An https:// URL still goes through TLS: a server that does not speak it is an error,
    never a plain answer (tests/security/test_tls.py checks the certificates)."""
    with (
        Client(plain_server.replace("http://", "https://")) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.http.get("/anything")
