"""The ``kittenfs`` command line (``python -m kittenfs``) against a real cluster."""

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cluster import Cluster

from kittenfs import Client


def kfs(
    *args: str,
    url: str | None = None,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m kittenfs ARGS`` (with --url when given) and return the finished process."""
    command = [sys.executable, "-m", "kittenfs", *args]
    if url is not None:
        command += ["--url", url]
    run_env = {k: v for k, v in os.environ.items() if k not in ("KITTENFS_URL", "COLUMNS")}
    run_env.update(env or {})
    return subprocess.run(
        command,
        check=False,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=run_env,
        timeout=timeout,
        cwd=cwd,
    )


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_put_file_prints_md5_and_get_prints_bytes(shared: Cluster, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    put = kfs("put", "/cli/file", str(path), url=shared.url)
    assert put.returncode == 0, put.stderr
    assert put.stdout.decode().strip() == md5(data)
    get = kfs("get", "/cli/file", url=shared.url)
    assert get.returncode == 0, get.stderr
    assert get.stdout == data
    with Client(shared.url) as client:
        assert client.get("/cli/file") == data


def test_put_reads_stdin(shared: Cluster) -> None:
    data = b"from stdin\n" * 1000 + bytes(range(256))
    put = kfs("put", "/cli/stdin", "-", url=shared.url, stdin=data)
    assert put.returncode == 0, put.stderr
    assert put.stdout.decode().strip() == md5(data)
    # FILE defaults to stdin.
    put = kfs("put", "/cli/stdin2", url=shared.url, stdin=b"default")
    assert put.returncode == 0, put.stderr
    with Client(shared.url) as client:
        assert client.get("/cli/stdin") == data
        assert client.get("/cli/stdin2") == b"default"


def test_put_reads_stdin_redirected_from_a_file(shared: Cluster, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    path = tmp_path / "redirected.bin"
    path.write_bytes(data)
    env = {k: v for k, v in os.environ.items() if k != "KITTENFS_URL"}
    with path.open("rb") as handle:
        put = subprocess.run(
            [sys.executable, "-m", "kittenfs", "put", "/cli/redir", "-", "--url", shared.url],
            check=False,
            stdin=handle,
            capture_output=True,
            env=env,
            timeout=60,
        )
    assert put.returncode == 0, put.stderr
    assert put.stdout.decode().strip() == md5(data)
    with Client(shared.url) as client:
        assert client.get("/cli/redir") == data


def test_get_to_file(shared: Cluster, tmp_path: Path) -> None:
    data = os.urandom(10 * 1024 * 1024)
    with Client(shared.url) as client:
        client.put("/cli/big", data)
    out = tmp_path / "out.bin"
    get = kfs("get", "/cli/big", "-o", str(out), url=shared.url)
    assert get.returncode == 0, get.stderr
    assert get.stdout == b""
    assert out.read_bytes() == data
    get = kfs("get", "/cli/big", "--output", str(tmp_path / "out2.bin"), url=shared.url)
    assert get.returncode == 0, get.stderr
    assert (tmp_path / "out2.bin").read_bytes() == data


def test_get_of_a_corrupt_value_fails(cluster: Cluster, tmp_path: Path) -> None:
    data = os.urandom(5 * 1024 * 1024)
    with Client(cluster.url) as client:
        client.put("/cli/corrupt", data)
    files = [
        p
        for i in range(len(cluster.nodes))
        for p in (cluster.root / f"worker-{i}" / "blobs").rglob("*")
        if p.is_file()
    ]
    assert len(files) == 3
    for path in files:
        with path.open("r+b") as handle:
            handle.seek(-10, os.SEEK_END)
            byte = handle.read(1)[0]
            handle.seek(-10, os.SEEK_END)
            handle.write(bytes([byte ^ 1]))
    get = kfs("get", "/cli/corrupt", url=cluster.url)
    assert get.returncode == 1 and get.stdout == b""  # not a byte of a damaged block
    assert b"error:" in get.stderr and b"502" in get.stderr
    get = kfs("get", "/cli/corrupt", "-o", str(tmp_path / "out.bin"), url=cluster.url)
    assert get.returncode == 1
    assert b"error:" in get.stderr


def test_get_missing_fails(shared: Cluster, tmp_path: Path) -> None:
    get = kfs("get", "/cli/none", url=shared.url)
    assert get.returncode == 1
    assert get.stdout == b""
    assert b"error:" in get.stderr


def test_rm(shared: Cluster) -> None:
    with Client(shared.url) as client:
        client.put("/cli/rm", b"x")
        rm = kfs("rm", "/cli/rm", url=shared.url)
        assert rm.returncode == 0, rm.stderr
        assert not client.exists("/cli/rm")
    rm = kfs("rm", "/cli/rm", url=shared.url)
    assert rm.returncode == 1
    assert b"error:" in rm.stderr
    assert b"/cli/rm" in rm.stderr


def test_ls_lists_keys_in_order(shared: Cluster) -> None:
    keys = ["/ls/b", "/ls/a", "/ls/c d", "/ls/ü", "/ls/a/nested", "/ls/Z"]
    with Client(shared.url) as client:
        for key in keys:
            client.put(key, b"v")
        client.put("/elsewhere", b"v")
    ls = kfs("ls", "/ls/", url=shared.url)
    assert ls.returncode == 0, ls.stderr
    expected = sorted(keys, key=lambda k: k.encode())
    assert ls.stdout.decode("utf-8").splitlines() == expected
    ls = kfs("ls", url=shared.url)  # PREFIX defaults to "/"
    assert ls.returncode == 0, ls.stderr
    listed = ls.stdout.decode("utf-8").splitlines()
    assert listed == sorted(listed, key=lambda k: k.encode())
    assert [key for key in listed if key.startswith("/ls/")] == expected
    assert "/elsewhere" in listed
    ls = kfs("ls", "/nothing/", url=shared.url)
    assert ls.returncode == 0
    assert ls.stdout == b""


def test_status_shows_every_worker_up(shared: Cluster) -> None:
    status = kfs("status", url=shared.url)
    assert status.returncode == 0, status.stderr
    text = status.stdout.decode()
    for node in shared.nodes:
        assert node.url in text, text
    assert text.count(" up ") >= len(shared.nodes), text
    assert "down" not in text


def test_status_shows_a_killed_worker_down(cluster: Cluster) -> None:
    cluster.nodes[2].kill()
    cluster.wait_worker_state(2, "down")
    text = kfs("status", url=cluster.url).stdout.decode()
    assert "down" in text
    assert text.count(" up ") == 2, text


def test_kittenfs_url_environment_variable(shared: Cluster) -> None:
    env = {"KITTENFS_URL": shared.url}
    put = kfs("put", "/cli/env", "-", stdin=b"via env", env=env)
    assert put.returncode == 0, put.stderr
    get = kfs("get", "/cli/env", env=env)
    assert get.returncode == 0, get.stderr
    assert get.stdout == b"via env"
    assert kfs("ls", "/cli/env", env=env).stdout.decode().splitlines() == ["/cli/env"]
    status = kfs("status", env=env)
    assert status.returncode == 0, status.stderr
    assert shared.nodes[0].url in status.stdout.decode()
    # --url wins over the environment.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    get = kfs("get", "/cli/env", url=closed, env=env)
    assert get.returncode == 1
    assert b"error:" in get.stderr


def test_unreachable_master_is_a_one_line_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for args in (["ls"], ["get", "/x"], ["rm", "/x"], ["put", "/x", "-"]):
        result = kfs(*args, url=closed)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.decode().startswith("error:"), (args, result.stderr)
        assert b"Traceback" not in result.stderr


def test_status_with_unreachable_master_is_a_one_line_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = kfs("status", url=closed)
    assert result.returncode == 1, result.stderr
    assert result.stderr.decode().startswith("error:"), result.stderr
    assert b"Traceback" not in result.stderr


def test_put_of_a_missing_file_is_an_error(shared: Cluster, tmp_path: Path) -> None:
    put = kfs("put", "/cli/x", "absent.bin", url=shared.url, cwd=tmp_path)
    assert put.returncode == 1
    assert b"error:" in put.stderr
    assert b"absent.bin" in put.stderr
    assert b"Traceback" not in put.stderr
    with Client(shared.url) as client:
        assert not client.exists("/cli/x")


def test_error_message_is_one_line_even_when_long(shared: Cluster) -> None:
    key = "/cli/" + "long-key-" * 20
    rm = kfs("rm", key, url=shared.url)
    assert rm.returncode == 1
    lines = rm.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error:") and key in lines[0]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["master"], "--data"),
        (["master", "--data", "X", "--port", "70000"], "--port"),
        (["master", "--data", "X", "--port", "-1"], "--port"),
        (["master", "--data", "X", "--port", "abc"], "--port"),
        (["master", "--data", "X", "--replicas", "0"], "--replicas"),
        (["master", "--data", "X", "--down-after", "0"], "--down-after"),
        (["worker", "--data", "X"], "--master"),
        (["worker", "--master", "http://127.0.0.1:1"], "--data"),
        (["worker", "--master", "127.0.0.1:3000", "--data", "X"], "--master"),
        (["worker", "--master", "http://127.0.0.1:1", "--data", "X", "--port", "99999"], "--port"),
        (["up", "--workers", "0"], "--workers"),
        (["get"], "key"),
        ([], "COMMAND"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_usage_exits_2_naming_the_flag(tmp_path: Path, args: list[str], flag: str) -> None:
    args = [str(tmp_path / "data") if a == "X" else a for a in args]
    result = kfs(*args, timeout=30)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert flag in result.stderr.decode(), result.stderr
    assert b"Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() or args[0] == "up"


def test_up_with_a_bad_port_exits_2(tmp_path: Path) -> None:
    result = kfs("up", "--port", "70000", "--data", str(tmp_path / "data"), timeout=60)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.decode().strip().splitlines()
    assert lines and "--port" in lines[-1], result.stderr


def test_help_exits_0() -> None:
    result = kfs("--help")
    assert result.returncode == 0
    for command in ("master", "worker", "up", "put", "get", "rm", "ls", "status"):
        assert command in result.stdout.decode()


def test_cli_and_http_agree(shared: Cluster) -> None:
    assert httpx.put(f"{shared.url}/cli/http", content=b"from http").status_code == 201
    assert kfs("get", "/cli/http", url=shared.url).stdout == b"from http"


def test_client_options_go_before_or_after_the_command(shared: Cluster) -> None:
    with Client(shared.url) as client:
        client.put("/cli/global", b"either side")
    for args in (
        ["--url", shared.url, "get", "/cli/global"],
        ["get", "/cli/global", "--url", shared.url],
        ["--url", "http://127.0.0.1:1", "get", "/cli/global", "--url", shared.url],
    ):
        result = kfs(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout == b"either side"
    listed = kfs("--url", shared.url, "ls", "/cli/global")
    assert listed.stdout.decode().splitlines() == ["/cli/global"]


def test_version() -> None:
    result = kfs("--version")
    assert result.returncode == 0
    assert result.stdout.decode().startswith("kittenfs ")


def test_a_connection_error_names_the_server_and_suggests_up() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for args in (["ls"], ["--url", closed, "status"], ["get", "/x"]):
        result = kfs(*args, env={"KITTENFS_URL": closed})
        assert result.returncode == 1, result.stderr
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("error:") and closed in lines[0], lines
        assert "kittenfs up" in lines[0], lines


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["ls"], {"KITTENFS_URL": "127.0.0.1:3000"}, "KITTENFS_URL=127.0.0.1:3000"),
        (["--url", "nowhere", "ls"], {}, "--url nowhere"),
        (["ls", "--ca", "/nonexistent.pem"], {}, "--ca /nonexistent.pem"),
        (["master", "--data", "X"], {"KITTENFS_REPLICAS": "none"}, "KITTENFS_REPLICAS=none"),
        (["worker", "--data", "X"], {"KITTENFS_MASTER": "m:3000"}, "KITTENFS_MASTER=m:3000"),
        (["--frobnicate", "ls"], {}, "--frobnicate"),
    ],
)
def test_every_error_is_one_line_in_one_format(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    args = [str(tmp_path / "data") if a == "X" else a for a in args]
    result = kfs(*args, env=env, timeout=30)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert named in lines[0], lines
    assert not (tmp_path / "data").exists()


def test_get_into_a_pipe_closed_early_exits_quietly(shared: Cluster) -> None:
    with Client(shared.url) as client:
        client.put("/cli/piped", os.urandom(8 * 1024 * 1024))
    env = {k: v for k, v in os.environ.items() if k != "KITTENFS_URL"}
    get = subprocess.Popen(
        [sys.executable, "-m", "kittenfs", "get", "/cli/piped", "--url", shared.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert get.stdout is not None and get.stderr is not None
        assert len(get.stdout.read(10)) == 10  # what `head -c 10` takes, then it leaves
        get.stdout.close()
        assert get.wait(60) == 141
        assert get.stderr.read() == b""
    finally:
        if get.poll() is None:
            get.kill()
            get.wait()


def test_help_shows_defaults_and_variables_without_markup() -> None:
    for command, expected in (
        ("master", ["(default 3000; env KITTENFS_PORT)", "env KITTENFS_ADMIN_TOKEN"]),
        (
            "worker",
            ["(required; env KITTENFS_MASTER)", "(default 16 MiB; env KITTENFS_VERIFY_MAX)"],
        ),
        ("ls", ["env KITTENFS_URL", "env KITTENFS_TOKEN"]),
        ("up", ["(default 3)"]),
    ):
        result = kfs(command, "--help", env={"COLUMNS": "250"})
        assert result.returncode == 0, result.stderr
        text = result.stdout.decode()
        for line in expected:
            assert line in text, (command, line, text)
        assert "``" not in text and ":func:" not in text


def test_a_process_on_a_port_in_use_says_so_in_one_line(shared: Cluster, tmp_path: Path) -> None:
    taken = shared.url.rsplit(":", 1)[1]
    for args in (
        ["master", "--data", str(tmp_path / "m"), "--port", taken],
        ["worker", "--master", shared.url, "--data", str(tmp_path / "w"), "--port", taken],
    ):
        result = kfs(*args, timeout=60)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.decode().splitlines() if " INFO " not in line]
        assert errors == [
            f"error: --host 127.0.0.1 --port {taken}: cannot listen there (address already in use)"
        ], result.stderr
