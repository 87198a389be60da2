"""Damaged and missing copies met by a read, each path forced onto them (issue 9, items 4-5).

- A worker sent a client for a blob it lacks sends it back to the master along the signed
  fallback of its link; the master excludes that worker and sends it on (curl -L).
- With ``--verify-max 0`` a worker checks each block only as it sends it, so a damaged block
  cuts the stream part way: the master (``?direct``) and the Python client's streaming
  reader go on from the next replica, from the first byte not yet received.
- Format-1 blob files (written before block digests) are still served, checked whole.
"""

import asyncio
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from cluster import Cluster, MakeCluster

import kittenfs
from kittenfs.records import BlobHeader
from kittenfs.worker.blobstore import BLOCK_SIZE


def redirect_to(http: httpx.Client, cluster: Cluster, key: str, node: int) -> str:
    """Return a redirect Location for ``key`` that names worker ``node`` (asking the master
    again until its random choice falls there; a redirect alone changes nothing)."""
    for _ in range(200):
        location = http.get(key).headers["location"]
        if location.startswith(cluster.nodes[node].url + "/"):
            return location
    raise AssertionError(f"the master never redirected {key} to worker {node}")


def flip(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_a_worker_without_the_blob_sends_the_client_back_and_the_read_goes_on(
    cluster: Cluster,
) -> None:
    value = os.urandom(200_000)
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        assert http.put("/back/and/on", content=value).status_code == 201
        cluster.blob_file(1, "/back/and/on").unlink()
        location = redirect_to(http, cluster, "/back/and/on", 1)
        at_worker = httpx.get(location, timeout=30)
        assert at_worker.status_code == 302, at_worker.text
        back = at_worker.headers["location"]
        assert back.startswith(cluster.url + "/back/and/on?")
        assert parse_qs(urlsplit(back).query)["kfs-exclude"] == ["1"]
        again = httpx.get(back, timeout=30)
        assert again.status_code == 302
        assert not again.headers["location"].startswith(cluster.nodes[1].url)
        assert httpx.get(again.headers["location"], timeout=30).content == value
        # A fallback link is signed: altered (here: excluding another worker), it is refused.
        forged = back.replace("kfs-exclude=1", "kfs-exclude=0")
        assert httpx.get(forged, timeout=30).status_code == 403


def test_a_fallback_link_expires_and_is_bound_to_its_key(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        http.put("/bound/a", content=os.urandom(100_000))
        http.put("/bound/b", content=os.urandom(100_000))
        location = http.get("/bound/a").headers["location"]
        fallback = parse_qs(urlsplit(location).query)["kfs-fallback"][0]
        other = fallback.replace("/bound/a?", "/bound/b?")
        assert http.get(other).status_code == 403
        assert http.get(fallback).status_code == 302
        stale = fallback.replace("kfs-expires=", "kfs-expires=1")  # a different expiry
        assert http.get(stale).status_code == 403


def test_damaged_blocks_on_every_replica_are_served_around(make_cluster: MakeCluster) -> None:
    """Three copies of 12 blocks, each damaged in a different block: no copy is whole, but
    each block has a good one.  Streamed through the master the value comes back whole (and
    any range of it); the Python client's reads do too; a redirected read is cut (never
    wrong bytes)."""
    cluster = make_cluster(worker_args=["--verify-max", "0"], master_args=["--cache-bytes", "0"])
    value = os.urandom(12 * BLOCK_SIZE)

    def damaged_key(name: str) -> str:
        key = f"/stitched/{name}"
        assert httpx.put(f"{cluster.url}{key}", content=value, timeout=30).status_code == 201
        for node, block in enumerate((2, 5, 8)):
            path = cluster.blob_file(node, key)
            offset = BlobHeader.unpack(path.read_bytes()[:2000]).data_offset
            flip(path, offset + block * BLOCK_SIZE + 1000)
        return key

    key = damaged_key("direct")
    for _ in range(3):
        got = httpx.get(f"{cluster.url}{key}", params={"direct": ""}, timeout=60)
        assert got.status_code == 200 and got.content == value
    part = httpx.get(
        f"{cluster.url}{key}",
        params={"direct": ""},
        timeout=60,
        headers={"Range": f"bytes={BLOCK_SIZE}-{10 * BLOCK_SIZE - 1}"},
    )
    assert part.status_code == 206 and part.content == value[BLOCK_SIZE : 10 * BLOCK_SIZE]

    with kittenfs.Client(cluster.url) as client:
        assert client.get(damaged_key("get")) == value
        with client.open(damaged_key("open")) as reader:
            assert reader.read() == value

    async def async_get() -> bytes:
        async with kittenfs.AsyncClient(cluster.url) as client:
            return await client.get(damaged_key("async"))

    assert asyncio.run(async_get()) == value
    key = damaged_key("redirected")
    with httpx.Client(timeout=60, follow_redirects=True) as curl:
        try:
            answer = curl.get(f"{cluster.url}{key}")
        except httpx.RemoteProtocolError:
            pass  # cut part way, as it must be: no bytes of a damaged block were sent
        else:  # or a clear error; never other bytes
            assert answer.status_code != 200 or answer.content == value


def test_format_1_blob_files_are_still_served_and_checked(cluster: Cluster) -> None:
    """A file written before block digests (format 1) is served, checked by its MD5; a flipped
    byte in one makes that copy unservable, and the read goes on elsewhere."""
    value = os.urandom(300_000)
    with httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=True) as http:
        assert http.put("/old/format", content=value).status_code == 201
        md5 = http.head("/old/format").headers["content-md5"]
        for node in range(3):
            path = cluster.blob_file(node, "/old/format")
            header = BlobHeader.unpack(path.read_bytes()[:2000])
            old = BlobHeader(header.key, header.version, header.size, md5)  # format 1
            path.write_bytes(old.pack() + value)
        for _ in range(6):
            assert http.get("/old/format").content == value
            assert (
                http.get(
                    "/old/format", params={"direct": ""}, headers={"Range": "bytes=1000-1999"}
                ).content
                == value[1000:2000]
            )
        path = cluster.blob_file(0, "/old/format")
        flip(path, len(path.read_bytes()) - 5000)
        location = redirect_to(
            httpx.Client(base_url=cluster.url, timeout=30), cluster, "/old/format", 0
        )
        assert httpx.get(location, timeout=30).status_code == 302  # sent back: MD5 fails
        for _ in range(6):
            assert http.get("/old/format").content == value
