"""Stand-in peers for registration tests: HTTP endpoints that answer ``GET /health`` as a
worker with a given id would, and nothing else.

The master registers a worker only once it has reached it at its URL and heard its id
(master/worker_link.py); tests of registration itself (concurrent registrations, index
assignment) use these instead of starting a dozen worker processes.  Everything else in
those tests, the master included, is real.
"""

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _answering(worker_id: str) -> type[BaseHTTPRequestHandler]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok", "role": "worker", "id": worker_id}).encode()
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Health


@contextmanager
def worker_peers(count: int) -> Iterator[list[tuple[str, str]]]:
    """Yield ``count`` (worker id, URL) pairs, each served on 127.0.0.1 (a free port) until
    the block ends."""
    servers = []
    try:
        for _ in range(count):
            worker_id = f"w-{uuid.uuid4().hex[:12]}"
            server = ThreadingHTTPServer(("127.0.0.1", 0), _answering(worker_id))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append((worker_id, server))
        yield [(wid, f"http://127.0.0.1:{srv.server_address[1]}") for wid, srv in servers]
    finally:
        for _, server in servers:
            server.shutdown()
            server.server_close()
