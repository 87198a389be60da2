"""``pip install kittenfs`` (no extras) is the client alone: a fresh venv gets the library
and the client commands, none of the servers' native packages, and talks to a real cluster.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
#: The packages of the "server" extra, none of which the client may need.
SERVER_PACKAGES = ("aiohttp", "plyvel", "prometheus_client", "xxhash", "cryptography")


def run(*command: str | Path, timeout: float = 120) -> str:
    """Run ``command`` outside any test venv settings; return its stdout, failing on non-zero."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KITTENFS_", "VIRTUAL_ENV"))}
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"{command}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the bin/ of a fresh venv with ``pip install kittenfs`` (its declared
    dependencies, no extras): a wheel built from a copy of the source tree (a build in
    place would leave build/ in the checkout), installed by this venv's pip."""
    root = tmp_path_factory.mktemp("client-only")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    pip = (sys.executable, "-m", "pip", "-q", "--disable-pip-version-check")
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", root / "wheels", source)
    run(sys.executable, "-m", "venv", "--without-pip", root / "venv")
    [wheel] = (root / "wheels").glob("kittenfs-*-py3-none-any.whl")
    run(*pip, "--python", root / "venv" / "bin" / "python", "install", wheel, timeout=180)
    return root / "venv" / "bin"


def test_no_server_package_is_installed(venv: Path) -> None:
    found = run(
        venv / "python",
        "-c",
        f"import importlib.util as u; print(*[n for n in {SERVER_PACKAGES!r} if u.find_spec(n)])",
    )
    assert found.strip() == ""


def test_the_client_modules_import_without_them(venv: Path) -> None:
    loaded = run(
        venv / "python",
        "-c",
        "import sys, kittenfs, kittenfs.client, kittenfs.commands, kittenfs.cli; "
        "kittenfs.cli.build_parser(); print(*sorted(sys.modules))",
    ).split()
    assert "kittenfs.commands" in loaded
    assert not [name for name in loaded if name.split(".")[0] in SERVER_PACKAGES]


def test_the_python_client_works(venv: Path, shared: Cluster) -> None:
    script = (
        "import sys, kittenfs\n"
        "kv = kittenfs.Client(sys.argv[1])\n"
        "kv.put('/client-only/lib', b'purr')\n"
        "assert kv.get('/client-only/lib') == b'purr'\n"
        "assert kv.head('/client-only/lib').size == 4\n"
        "print(*kv.list('/client-only/'))\n"
    )
    assert run(venv / "python", "-c", script, shared.url).split() == ["/client-only/lib"]


def test_the_cli_puts_gets_and_lists(venv: Path, shared: Cluster, tmp_path: Path) -> None:
    kittenfs = venv / "kittenfs"
    value = tmp_path / "value.bin"
    value.write_bytes(os.urandom(300_000))
    run(kittenfs, "put", "/client-only/cli", value, "--url", shared.url)
    run(kittenfs, "get", "/client-only/cli", "-o", tmp_path / "back", "--url", shared.url)
    assert (tmp_path / "back").read_bytes() == value.read_bytes()
    assert "/client-only/cli" in run(kittenfs, "ls", "/client-only/", "--url", shared.url)


@pytest.mark.parametrize("command", ["master", "worker", "up"])
def test_a_server_command_says_what_to_install(venv: Path, command: str) -> None:
    done = subprocess.run(
        [venv / "kittenfs", command, "--data", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "pip install 'kittenfs[server]'" in done.stderr
