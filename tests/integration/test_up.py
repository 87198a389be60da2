"""``kittenfs up``: a whole local cluster as child processes, started, stopped and restarted."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict, Unpack

import httpx
from cluster import Cluster, MakeCluster
from peers import worker_peers

from kittenfs.cluster import LocalCluster, free_port_block, port_free

UP_LINE = "kittenFS is up"


def _stat(pid: int) -> tuple[str, int] | None:
    """Return (state, parent pid) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def children_of(pid: int) -> list[int]:
    """Return the PIDs of the live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def is_kittenfs(pid: int) -> bool:
    try:
        return b"kittenfs" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def role_of(pid: int) -> str | None:
    """Return "master", "worker" or "up" for a kittenfs process, else None."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if b"kittenfs" not in args:
        return None
    position = args.index(b"kittenfs") + 1
    return args[position].decode() if position < len(args) else None


def kill_leftovers(pids: list[int]) -> None:
    """kill -9 each recorded kittenfs process still alive (checked by PID and command line)."""
    for pid in pids:
        if alive(pid) and is_kittenfs(pid):
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _default_sigint() -> None:
    """Let ``up`` take Ctrl-C even when the suite runs as a background job of a shell without
    job control, which starts every command with SIGINT ignored (POSIX), inherited by exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Up:
    """One run of ``kittenfs up``, its output files and the PIDs it had as children."""

    def __init__(
        self,
        data: Path,
        port: int,
        workers: int,
        logs: Path,
        preexec_fn: Callable[[], None] = _default_sigint,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data, self.port, self.workers = data, port, workers
        self.out = logs.with_suffix(".out")
        self.err = logs.with_suffix(".err")
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kittenfs",
                    "up",
                    "--workers",
                    str(workers),
                    "--port",
                    str(port),
                    "--data",
                    str(data),
                    "--s3-port",  # never the default 9000, which parallel tests would share
                    str(free_port_block(1)),
                ],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                preexec_fn=preexec_fn,
                env=env,
            )
        self.children: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def logs(self) -> str:
        return f"stdout:\n{self.output()}\nstderr:\n{self.err.read_text(errors='replace')}"

    def wait_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while UP_LINE not in self.output():
            self.note_children()
            if self.popen.poll() is not None:
                raise AssertionError(f"up exited with {self.popen.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {UP_LINE!r} within {timeout} s:\n{self.logs()}")
            time.sleep(0.1)
        self.note_children()

    def note_children(self) -> list[int]:
        for pid in children_of(self.popen.pid):
            if pid not in self.children:
                self.children.append(pid)
        return self.children

    def stop(self, sig: int, timeout: float = 20.0) -> int:
        """Send ``sig`` to ``up`` only; return its exit status once it has exited."""
        self.note_children()
        os.kill(self.popen.pid, sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"up did not exit within {timeout} s of {sig!r}:\n{self.logs()}"
            ) from None

    def wait_children_gone(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while left := [pid for pid in self.children if alive(pid)]:
            if time.monotonic() > deadline:
                raise AssertionError(f"children {left} still alive:\n{self.logs()}")
            time.sleep(0.1)

    def cleanup(self) -> None:
        if self.popen.poll() is None:
            self.note_children()
            self.popen.kill()
            self.popen.wait(10)
        kill_leftovers(self.children)


class UpOptions(TypedDict, total=False):
    """Up's optional arguments, as running_up passes them on."""

    preexec_fn: Callable[[], None]
    env: dict[str, str] | None


@contextmanager
def running_up(
    tmp_path: Path, data: Path, port: int, workers: int, name: str, **options: Unpack[UpOptions]
) -> Iterator[Up]:
    up = Up(data, port, workers, tmp_path / name, **options)
    try:
        yield up
    finally:
        up.cleanup()


def _workers(url: str) -> list[dict[str, Any]]:
    workers: list[dict[str, Any]] = httpx.get(f"{url}/_cluster", timeout=5).json()["workers"]
    return workers


def test_up_serves_stops_and_restarts_with_the_same_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port_block(3)

    with running_up(tmp_path, data, port, 2, "first") as up:
        up.wait_up()
        assert up.url in up.output()
        response = httpx.put(f"{up.url}/persist/me", content=b"still here", timeout=30)
        assert response.status_code == 201, response.text
        got = httpx.get(f"{up.url}/persist/me", follow_redirects=True, timeout=30)
        assert got.status_code == 200 and got.content == b"still here"

        workers = _workers(up.url)
        assert [w["index"] for w in workers] == [0, 1]
        assert all(w["state"] == "up" for w in workers)
        first_urls = {w["index"]: w["url"] for w in workers}
        assert set(first_urls.values()) == {
            f"http://127.0.0.1:{port + 1}",
            f"http://127.0.0.1:{port + 2}",
        }
        assert sorted(p.name for p in data.iterdir()) == [
            "cluster.secret",
            "master",
            "worker-0",
            "worker-1",
        ]
        assert (data / "cluster.secret").stat().st_mode & 0o777 == 0o600

        children = up.note_children()
        assert len(children) == 3, children  # the master and two workers
        assert all(is_kittenfs(pid) for pid in children)

        assert up.stop(signal.SIGTERM) == 0, up.logs()
        up.wait_children_gone()
        assert "stopped" in up.output()
        assert "Traceback" not in up.logs()

    for i in range(3):
        assert port_free(port + i, reuse=True), f"port {port + i} still listened on"

    with running_up(tmp_path, data, port, 2, "second") as up:
        up.wait_up()
        got = httpx.get(f"{up.url}/persist/me", follow_redirects=True, timeout=30)
        assert got.status_code == 200 and got.content == b"still here"
        assert httpx.get(f"{up.url}/persist/me", params={"direct": ""}).content == b"still here"
        workers = _workers(up.url)
        assert {w["index"]: w["url"] for w in workers} == first_urls
        assert all(w["state"] == "up" for w in workers)
        assert httpx.get(f"{up.url}/persist/", params={"list": ""}).json()["keys"] == [
            "/persist/me"
        ]
        children = up.note_children()
        assert len(children) == 3, children

        assert up.stop(signal.SIGINT) == 0, up.logs()
        up.wait_children_gone()
        assert "Traceback" not in up.logs()


def test_up_survives_ctrl_c_delivered_to_every_process(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches `up` and its children at once; `up` still exits cleanly."""
    data = tmp_path / "data"
    port = free_port_block(2)
    with running_up(tmp_path, data, port, 1, "ctrlc") as up:
        up.wait_up()
        children = up.note_children()
        assert len(children) == 2
        for pid in [up.popen.pid, *children]:
            os.kill(pid, signal.SIGINT)
        assert up.popen.wait(20) == 0, up.logs()
        up.wait_children_gone()
        assert "Traceback" not in up.logs()


def test_sigterm_during_start_up_stops_the_children(tmp_path: Path) -> None:
    """(Found as a bug: `up` installed its SIGTERM handler only after start-up, so SIGTERM
    during start-up killed `up` and orphaned the master.)"""
    data = tmp_path / "data"
    port = free_port_block(2)
    with running_up(tmp_path, data, port, 1, "early") as up:
        # Hold the master in start-up: freeze it as soon as it exists, so `up` is still
        # waiting for it to answer /health when SIGTERM arrives.
        # (Found by a flake: PIDs wrap, so the first child by PID is not always the master.)
        deadline = time.monotonic() + 10
        while not (masters := [pid for pid in up.note_children() if role_of(pid) == "master"]):
            assert time.monotonic() < deadline, up.logs()
            time.sleep(0.005)
        master = masters[0]
        os.kill(master, signal.SIGSTOP)
        try:
            time.sleep(0.5)
            assert UP_LINE not in up.output()
            os.kill(up.popen.pid, signal.SIGTERM)
            time.sleep(0.3)
        finally:
            if alive(master):
                os.kill(master, signal.SIGCONT)  # let it act on the SIGTERM `up` sent it
        status = up.popen.wait(20)
        up.wait_children_gone(timeout=15)
        assert status == 0, up.logs()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_worker_i_gets_index_i_even_if_it_starts_slowly(tmp_path: Path) -> None:
    """worker-i (port P+1+i) must register as index i, even when worker-0 is slow to start.

    (Found as a bug: `up` spawned every worker at once, so they raced to register.)
    """
    data = tmp_path / "data"
    port = free_port_block(3)
    with running_up(tmp_path, data, port, 2, "order") as up:
        deadline = time.monotonic() + 20
        worker0 = None
        while worker0 is None:
            assert time.monotonic() < deadline and up.popen.poll() is None, up.logs()
            worker0 = next(
                (pid for pid in up.note_children() if str(data / "worker-0") in _cmdline(pid)), None
            )
            time.sleep(0.005)
        os.kill(worker0, signal.SIGSTOP)  # long enough for a worker-1 started meanwhile to register
        try:
            time.sleep(2.0)
        finally:
            os.kill(worker0, signal.SIGCONT)
        up.wait_up()
        urls = {w["index"]: w["url"] for w in _workers(up.url)}
        assert urls == {0: f"http://127.0.0.1:{port + 1}", 1: f"http://127.0.0.1:{port + 2}"}


def _register_at_once(cluster: Cluster, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST every registration to the master before reading any answer; return the answers."""
    port = int(cluster.url.rsplit(":", 1)[1])
    signature = "".join(
        f"{k}: {v}\r\n" for k, v in cluster.signed("POST", "/_workers/register").items()
    ).encode()
    connections = []
    try:
        for body in bodies:
            raw = json.dumps(body).encode()
            connections.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            request = (
                b"POST /_workers/register HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nConnection: close\r\n"
                + signature
                + b"Content-Length: %d\r\n\r\n" % len(raw)
            ) + raw
            connections[-1].sendall(request)
        answers: list[dict[str, Any]] = []
        for sock in connections:
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            head, _, payload = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            answers.append(json.loads(payload))
        return answers
    finally:
        for sock in connections:
            sock.close()


def _registration(peer: tuple[str, str]) -> dict[str, Any]:
    return {"id": peer[0], "url": peer[1], "index": None}


def test_registrations_one_after_another_get_distinct_indices(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(workers=0)
    with worker_peers(3) as peers:
        answers = [_register_at_once(cluster, [_registration(p)])[0] for p in peers]
        assert [a["index"] for a in answers] == [0, 1, 2]
        # Registering again with the same id and URL keeps the index.
        assert _register_at_once(cluster, [_registration(peers[1])])[0]["index"] == 1
    assert [w["index"] for w in _workers(cluster.url)] == [0, 1, 2]


def test_workers_registering_at_once_get_distinct_indices(make_cluster: MakeCluster) -> None:
    """(Found as a bug: Membership.register chose max(index)+1 before awaiting its fsync, so
    workers registering at once all got index 0.)"""
    cluster = make_cluster(workers=0)
    with worker_peers(6) as peers:
        answers = _register_at_once(cluster, [_registration(p) for p in peers])
    assert sorted(a["index"] for a in answers) == list(range(6))
    assert [w["index"] for w in _workers(cluster.url)] == list(range(6))


def test_up_rejects_zero_workers(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "kittenfs", "up", "--workers", "0", "--data", str(tmp_path)]
    result = subprocess.run(command, check=False, capture_output=True, timeout=30)
    assert result.returncode == 2
    assert b"--workers" in result.stderr


def _ignore_sigint() -> None:
    """Start as a shell without job control starts a background job: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _wait(condition: Callable[[], bool], what: str, up: Up, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s:\n{up.logs()}")
        time.sleep(0.1)


def _worker_pid(up: Up, index: int) -> int | None:
    target = str(up.data / f"worker-{index}")
    return next((pid for pid in up.note_children() if target in _cmdline(pid).split()), None)


def test_up_says_which_port_is_taken(tmp_path: Path) -> None:
    port = free_port_block(3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 2))
        taken.listen()
        with running_up(tmp_path, tmp_path / "data", port, 2, "taken") as up:
            assert up.popen.wait(30) == 1, up.logs()
            errors = up.err.read_text()
            assert errors.startswith("error: ") and len(errors.splitlines()) == 1, errors
            assert f"port {port + 2} (worker-1) is in use" in errors
            assert UP_LINE not in up.output()
            assert up.note_children() == []


def test_up_never_takes_another_clusters_master_for_its_own(tmp_path: Path) -> None:
    port = free_port_block(2)
    with running_up(tmp_path, tmp_path / "first", port, 1, "first") as first:
        first.wait_up()
        with running_up(tmp_path, tmp_path / "second", port, 1, "second") as second:
            assert second.popen.wait(30) == 1, second.logs()
            assert f"ports {port} (the master), {port + 1} (worker-0) are in use" in (
                second.err.read_text()
            )
            assert UP_LINE not in second.output()
        # Past the port check (a port taken between the check and the bind): the master
        # that answers is not the one whose data directory it was given.
        ours = LocalCluster(tmp_path / "first", port, 1, 1)
        ours.urls = [ours.url]
        assert ours._healthy(1, True)
        other = LocalCluster(tmp_path / "other", port, 1, 1)
        other.urls = [other.url]
        assert not other._healthy(1, True)
        assert first.stop(signal.SIGTERM) == 0, first.logs()


def test_up_starts_a_worker_that_dies_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port_block(3)
    with running_up(tmp_path, data, port, 2, "restart") as up:
        up.wait_up()
        dead = _worker_pid(up, 0)
        assert dead is not None, up.logs()
        os.kill(dead, signal.SIGKILL)
        _wait(lambda: _worker_pid(up, 0) not in (None, dead), "new worker-0", up)
        _wait(
            lambda: (
                all(w["state"] == "up" for w in _workers(up.url))
                and _worker_pid(up, 0) not in (None, dead)
            ),
            "worker-0 up again",
            up,
        )
        assert up.popen.poll() is None, up.logs()
        assert "worker-0 exited with status -9; starting it again" in up.err.read_text()
        assert {w["index"]: w["url"] for w in _workers(up.url)}[0] == f"http://127.0.0.1:{port + 1}"
        assert up.stop(signal.SIGTERM) == 0, up.logs()
        up.wait_children_gone()


def test_up_stops_when_its_master_dies(tmp_path: Path) -> None:
    port = free_port_block(2)
    with running_up(tmp_path, tmp_path / "data", port, 1, "masterless") as up:
        up.wait_up()
        master = next(pid for pid in up.note_children() if role_of(pid) == "master")
        os.kill(master, signal.SIGKILL)
        assert up.popen.wait(30) == 1, up.logs()
        up.wait_children_gone()
        assert "error: up: the master exited" in up.err.read_text()
        assert "Traceback" not in up.logs()


def test_up_started_with_sigint_ignored_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port_block(2)
    with running_up(
        tmp_path, tmp_path / "data", port, 1, "ignored", preexec_fn=_ignore_sigint
    ) as up:
        up.wait_up()
        assert up.stop(signal.SIGINT) == 0, up.logs()
        up.wait_children_gone()
        assert "Traceback" not in up.logs()


def test_up_gives_its_children_no_settings_from_its_environment(tmp_path: Path) -> None:
    port = free_port_block(3)
    env = {
        **os.environ,
        "KITTENFS_ADVERTISE": "http://elsewhere.invalid:1",
        "KITTENFS_PORT": "1",
        "KITTENFS_SCRUB_RATE": "-1",
    }
    with running_up(tmp_path, tmp_path / "data", port, 2, "env", env=env) as up:
        up.wait_up()
        urls = sorted(w["url"] for w in _workers(up.url))
        assert urls == [f"http://127.0.0.1:{port + 1}", f"http://127.0.0.1:{port + 2}"]
        assert up.stop(signal.SIGTERM) == 0, up.logs()
