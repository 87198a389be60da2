"""Resource bounds: no file descriptors leak across thousands of connections (clean, cut and
half-sent), and memory stays flat under a steady load of overwrites."""

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def hit(url: str, how: int) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        if how == 0:  # a whole request, answered, then closed by the server
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while conn.recv(65536):
                pass
        elif how == 1:  # half a request, then gone
            conn.sendall(b"PUT /leak HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        # how == 2: connect and leave at once


def test_no_descriptor_leaks_across_thousands_of_connections(shared):
    targets = [(shared.master.pid, shared.url), (shared.nodes[0].pid, shared.nodes[0].url)]
    with httpx.Client(base_url=shared.url, timeout=30) as http:  # warm the pools
        assert http.put("/fd/warm", content=b"x" * 100_000).status_code in (201, 204)
    before = {pid: fds(pid) for pid, _ in targets}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: hit(targets[i % 2][1], i % 3), range(3000)))
    with httpx.Client(base_url=shared.url, timeout=30, follow_redirects=True) as http:
        for i in range(100):
            assert http.get("/fd/warm").status_code == 200
    deadline_reached = False
    for _ in range(50):  # connections the peers cut are closed once the server notices
        after = {pid: fds(pid) for pid, _ in targets}
        if all(after[pid] <= before[pid] + 8 for pid in before):
            break
        time.sleep(0.2)
    else:
        deadline_reached = True
    assert not deadline_reached, (before, after)


def test_memory_stays_flat_under_overwrites(shared):
    keys = [f"/rss/{i}" for i in range(300)]

    def round_of_puts(http: httpx.Client) -> None:
        for i in range(1500):
            assert http.put(keys[i % len(keys)], content=os.urandom(1 + i % 20_000)).status_code \
                in (201, 204)

    with httpx.Client(base_url=shared.url, timeout=30) as http:
        round_of_puts(http)  # warm-up: caches, pools and the index reach their size
        warm = {p.pid: rss_mib(p.pid) for p in (shared.master, *shared.nodes)}
        round_of_puts(http)
        round_of_puts(http)
    grown = {pid: rss_mib(pid) - warm[pid] for pid in warm}
    assert all(growth < 15 for growth in grown.values()), (warm, grown)
