"""Is the HTTP layer the floor?  The same trivial PUT route (read a 1 KiB body, answer 201)
served by several HTTP stacks, each in a process of its own, driven by the bench's load
generator (2 processes, c16); reports each server's CPU per request, which is what a
master's front costs before it does any kittenFS work.  Issue 12 asks this before choosing
(docs/performance.md, "Is the HTTP layer the floor?").

Stacks: aiohttp as kittenFS serves it (server.new_app: metrics, JSON errors, upload limits;
limits.Runner), the same on uvloop, bare aiohttp (no middlewares), and a raw asyncio
protocol with httptools's parser (llhttp), on uvloop: about the least a Python HTTP/1.1
server can do.  uvloop and httptools are not dependencies: ``pip install uvloop httptools``.

Run: python benchmarks/http_floor.py [--requests 20000] [--rounds 2] [--json FILE]
"""

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from kittenfs.bench.load import Phase, run_phase
from kittenfs.bench.procstat import cpu_seconds
from kittenfs.cluster import free_port_block

STACKS = ("aiohttp-kittenfs", "aiohttp-kittenfs-uvloop", "aiohttp-bare", "httptools-raw")


def serve(stack: str, port: int) -> None:
    """Serve the PUT route with ``stack`` on 127.0.0.1:``port`` until killed."""
    if stack == "httptools-raw":
        import uvloop

        uvloop.run(_raw(port))
        return
    from aiohttp import web

    async def put(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=201)

    async def main() -> None:
        if stack.startswith("aiohttp-kittenfs"):
            from kittenfs.config import Limits
            from kittenfs.limits import Runner
            from kittenfs.metrics import Metrics
            from kittenfs.server import new_app

            app = new_app(Metrics("master", lambda path: "key"), Limits())
            app.router.add_route("*", "/{tail:.*}", put)
            runner: web.AppRunner = Runner(app, Limits())
        else:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", put)
            runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    if stack.endswith("uvloop"):
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


async def _raw(port: int) -> None:
    import httptools

    answer = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"

    class Connection(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport  # uvloop's is not an asyncio.Transport subclass
            self.parser = httptools.HttpRequestParser(self)
            self.body: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            self.body = []
            self.transport.write(answer)

    server = await asyncio.get_running_loop().create_server(Connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def measure(stack: str, requests: int) -> dict[str, float]:
    """Start ``stack``'s server, drive ``requests`` PUTs through it, stop it; return its
    rate and CPU per request."""
    port = free_port_block(1)
    server = subprocess.Popen([sys.executable, __file__, "--serve", stack, "--port", str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.put(f"http://127.0.0.1:{port}/ready", content=b"x", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"{stack} did not start") from None
                time.sleep(0.1)
        keys = [f"/k/{i}" for i in range(requests)]
        before = cpu_seconds(server.pid)
        result = run_phase(Phase(f"http://127.0.0.1:{port}", "put", keys, 16, 1024), 2)
        cpu = cpu_seconds(server.pid) - before
        if result.errors:
            raise RuntimeError(f"{stack}: {result.errors} errors: {result.error_samples}")
        return {
            "rate": len(result.latencies) / result.wall,
            "server_cpu_us": cpu / requests * 1e6,
            "client_cpu_us": result.client_cpu / requests * 1e6,
        }
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="write the result to this file too")
    parser.add_argument("--serve", choices=STACKS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    rounds: dict[str, list[dict[str, float]]] = {stack: [] for stack in STACKS}
    for _ in range(args.rounds):
        for stack in STACKS:
            rounds[stack].append(measure(stack, args.requests))
    summary: dict[str, Any] = {
        stack: {
            figure: round(statistics.median(r[figure] for r in results))
            for figure in ("rate", "server_cpu_us", "client_cpu_us")
        }
        for stack, results in rounds.items()
    }
    text = json.dumps({"requests": args.requests, "rounds": args.rounds, "median": summary})
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
