"""References measured in the same run: nginx serving static files, and the disk itself.

The HTTP ceiling is nginx (Debian's package) serving the same 1 KiB and 16 MiB files from
disk to the same load generator.  The disk ceiling is writing the same bytes to files with
fsync, and reading them back.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NGINX_CONF = """
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root}/files;
    }}
}}
"""


def find_nginx(install: bool) -> tuple[str | None, str]:
    """Return the nginx binary (installing Debian's package if asked and root), and why not."""
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate, ""
    if not install:
        return None, "nginx is not installed (run without --no-install, or apt-get install nginx)"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "nginx is not installed and cannot be installed here (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt_get(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", *args], env=env, check=False, capture_output=True, text=True
        )

    done = apt_get("install", "-y", "-qq", "nginx-light")
    if done.returncode != 0:  # the package lists may be missing or stale
        apt_get("update", "-qq")
        done = apt_get("install", "-y", "-qq", "nginx-light")
    if done.returncode != 0 or not os.access("/usr/sbin/nginx", os.X_OK):
        return None, f"apt-get install nginx-light failed: {done.stderr.strip()[-200:]}"
    return "/usr/sbin/nginx", ""


@contextmanager
def nginx(binary: str, files: dict[str, bytes], port: int, workers: int) -> Iterator[int]:
    """Serve ``files`` (name -> bytes) with nginx on 127.0.0.1:``port``; yield its PID."""
    root = Path(tempfile.mkdtemp(prefix="kfs-nginx-"))
    root.chmod(0o755)  # nginx's workers run as an unprivileged user when started as root
    (root / "files").mkdir()
    for name, data in files.items():
        path = root / "files" / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, workers=workers))
    process = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(root), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, process)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("nginx exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not start listening")


def disk(size: int, count: int, directory: str | None = None) -> dict[str, float]:
    """Write ``count`` files of ``size`` bytes with fsync (file and dir), then read them back.

    Returns writes/s, reads/s and MB/s both ways: the ceiling a durable store cannot beat.
    """
    root = Path(tempfile.mkdtemp(prefix="kfs-disk-", dir=directory))
    data = os.urandom(size)
    try:
        dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        started = time.perf_counter()
        for i in range(count):
            fd = os.open(root / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.fsync(dir_fd)
        write_wall = time.perf_counter() - started
        os.close(dir_fd)
        started = time.perf_counter()
        for i in range(count):
            (root / f"f{i}").read_bytes()
        read_wall = time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "size": size,
        "count": count,
        "write_ops_s": count / write_wall,
        "write_mb_s": count * size / write_wall / 1e6,
        "read_ops_s": count / read_wall,
        "read_mb_s": count * size / read_wall / 1e6,
    }
