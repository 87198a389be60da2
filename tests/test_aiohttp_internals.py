"""Canary for the aiohttp internals that kittenfs/limits.py builds on.

The header-timeout guard and the JSON answers to the parser's rejections subclass aiohttp's
server (``AppRunner._make_server``, ``Server``, ``RequestHandler``) and read private state
(``Server._kwargs`` and ``_loop``, ``RequestHandler._waiter``).  aiohttp may change those in
any release; pyproject.toml pins aiohttp below the next minor version not tested.  When a
test here fails after an upgrade, limits.py needs a look before the pin is raised.
"""

import asyncio
import dataclasses
import inspect
import json

from aiohttp import web
from aiohttp.http_writer import StreamWriter
from aiohttp.web_protocol import RequestHandler

from kittenfs.config import Limits
from kittenfs.limits import LIMITS, Runner, _Connection, _Server

UPGRADE = "aiohttp changed an internal that kittenfs/limits.py relies on: "


def test_the_runner_hook_and_the_server_state_limits_py_reads_exist() -> None:
    assert inspect.iscoroutinefunction(web.AppRunner._make_server), UPGRADE + "_make_server"
    server_init = inspect.signature(web.Server.__init__).parameters
    for name in ("request_factory", "handler_cancellation", "loop", "kwargs"):
        assert name in server_init, UPGRADE + f"web.Server.__init__ lost {name!r}"

    async def made() -> web.Server:
        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            return web.Response()

        return web.Server(handler, handler_cancellation=True, keepalive_timeout=5.0)

    server = asyncio.run(made())
    for name in ("request_handler", "request_factory", "handler_cancellation", "_loop"):
        assert hasattr(server, name), UPGRADE + f"web.Server.{name}"
    assert server._kwargs == {"keepalive_timeout": 5.0}, UPGRADE + "web.Server._kwargs"


def test_the_connection_state_limits_py_reads_exists() -> None:
    handler_init = inspect.signature(RequestHandler.__init__).parameters
    assert list(handler_init)[:2] == ["self", "manager"], UPGRADE + "RequestHandler(manager)"
    assert handler_init["loop"].kind is inspect.Parameter.KEYWORD_ONLY, UPGRADE + "loop="
    for name in ("_waiter", "_loop"):  # limits.py's _awaiting_head and head timer
        assert name in _slots(RequestHandler), UPGRADE + f"RequestHandler.{name}"
    for name in ("data_received", "connection_lost", "force_close", "transport"):
        assert hasattr(RequestHandler, name), UPGRADE + f"RequestHandler.{name}"
    error = list(inspect.signature(RequestHandler.handle_error).parameters)
    assert error == ["self", "request", "status", "exc", "message"], (
        UPGRADE + f"RequestHandler.handle_error{error}"
    )
    assert "output_size" in inspect.getsource(StreamWriter), UPGRADE + "writer.output_size"


def _slots(cls: type) -> set[str]:
    return {slot for klass in cls.__mro__ for slot in getattr(klass, "__slots__", ())}


async def _serving(limits: Limits, pause: float) -> tuple[Runner, int]:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(pause)  # longer than the header timeout: must not count
        return web.json_response({"ok": True})

    app = web.Application()
    app[LIMITS] = limits
    app.router.add_get("/slow", slow)
    runner = Runner(app, limits)
    await runner.setup()
    assert isinstance(runner.server, _Server), UPGRADE + "AppRunner._make_server not used"
    assert isinstance(runner.server(), _Connection), UPGRADE + "Server.__call__ not used"
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    except TimeoutError:
        raise AssertionError(UPGRADE + f"no answer within 10 s to {data!r}") from None
    finally:
        writer.close()
    return answer


def _status_and_json(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_head_that_stalls_gets_408_a_slow_handler_does_not() -> None:
    """The behaviour the private pieces give: the header timer runs only while a head is
    awaited (``_waiter`` pending), not while a request is handled."""

    timeout = 0.5

    async def run() -> None:
        limits = dataclasses.replace(Limits(), header_timeout=timeout)
        runner, port = await _serving(limits, pause=timeout * 3)
        try:
            stalled = await _exchange(port, b"GET /slow HTTP/1.1\r\nHost: x\r\n")
            status, body = _status_and_json(stalled)
            assert status == 408 and body["error"] == "header_timeout", UPGRADE + repr(stalled)

            slow = await _exchange(
                port, b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert _status_and_json(slow) == (200, {"ok": True}), UPGRADE + repr(slow)

            bad = await _exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
            status, body = _status_and_json(bad)
            assert status == 400 and set(body) == {"error", "detail"}, UPGRADE + repr(bad)
        finally:
            await runner.cleanup()

    asyncio.run(run())
