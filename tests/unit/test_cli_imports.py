"""The command line starts fast: a client command imports no server module, no rich, no
reliability suite and no benchmark (checked by module, in a fresh interpreter: a timing
test would be flaky)."""

import json
import socket
import subprocess
import sys
from typing import Any

import pytest

#: Modules (and their sub-modules) a client command must not import.
HEAVY = (
    "aiohttp",
    "plyvel",
    "cryptography",
    "rich",
    "click",
    "pygments",
    "prometheus_client",
    "kittenfs.master",
    "kittenfs.worker",
    "kittenfs.server",
    "kittenfs.limits",
    "kittenfs.cluster",
    "kittenfs.tls",
    "kittenfs.reliability",
    "kittenfs.bench",
)

PROBE = """
import json, sys
from kittenfs import cli
try:
    status = cli.main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
heavy = {heavy!r}
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
print(json.dumps({{"status": status, "loaded": loaded, "httpx": "httpx" in sys.modules}}))
"""


def imported(*argv: str) -> dict[str, Any]:
    """Run the CLI with ``argv`` in a fresh interpreter; return its status and what it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=60,
        check=False,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    "argv",
    [
        ["ls"],
        ["get", "/k"],
        ["put", "/k", "-"],
        ["rm", "/k"],
        ["sign", "/k"],
        ["rebalance"],
        ["key", "list"],
    ],
)
def test_a_client_command_imports_no_heavy_module(closed_url: str, argv: list[str]) -> None:
    result = imported("--url", closed_url, *argv)
    assert result["status"] == 1  # nothing listens there
    assert result["loaded"] == []


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["ls", "--help"], []])
def test_help_and_version_import_not_even_the_http_client(argv: list[str]) -> None:
    result = imported(*argv)
    assert result["status"] in (0, 2)
    assert result["loaded"] == [] and not result["httpx"]


def test_server_commands_parse_without_server_modules() -> None:
    result = imported("master", "--help")
    assert result["loaded"] == [] and not result["httpx"]
