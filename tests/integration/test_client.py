"""kittenfs.Client and kittenfs.AsyncClient against a real running cluster."""

import asyncio
import hashlib
import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster import Cluster

import kittenfs
from kittenfs import (
    AsyncClient,
    Client,
    Conflict,
    KeyNotFound,
    KittenError,
    ServerError,
    Unavailable,
    ValueInfo,
)
from kittenfs.keys import key_path


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def client(shared: Cluster) -> Iterator[Client]:
    with Client(shared.url) as c:
        yield c


@pytest.fixture
def fresh(cluster: Cluster) -> Iterator[Client]:
    """A client of a cluster of this test's own (for tests that list "/" or break workers)."""
    with Client(cluster.url) as c:
        yield c


# -- put and get ---------------------------------------------------------------------------


def test_put_bytes_returns_md5_and_get_returns_them(client: Client) -> None:
    assert client.put("/greeting", b"hello kitten") == md5(b"hello kitten")
    assert client.get("/greeting") == b"hello kitten"
    assert client.put("/ba", bytearray(b"bytearray")) == md5(b"bytearray")
    assert client.get("/ba") == b"bytearray"
    assert client.put("/mv", memoryview(b"memoryview")) == md5(b"memoryview")
    assert client.get("/mv") == b"memoryview"
    assert client.put("/empty", b"") == md5(b"")
    assert client.get("/empty") == b""


def test_key_without_leading_slash_gets_one(client: Client) -> None:
    client.put("noslash", b"x")
    assert client.get("/noslash") == b"x"
    assert client.get("noslash") == b"x"
    assert list(client.list("/nos")) == ["/noslash"]


def test_put_replaces_value(client: Client) -> None:
    client.put("/k", b"one")
    client.put("/k", b"two")
    assert client.get("/k") == b"two"


def test_put_file_object(client: Client, tmp_path: Path) -> None:
    data = os.urandom(300 * 1024)
    path = tmp_path / "v.bin"
    path.write_bytes(data)
    with path.open("rb") as handle:
        assert client.put("/fileobj", handle) == md5(data)
    assert client.get("/fileobj") == data
    # A file object that was partly read sends only the rest.
    with path.open("rb") as handle:
        handle.read(1000)
        assert client.put("/rest", handle) == md5(data[1000:])
    assert client.get("/rest") == data[1000:]
    # An in-memory stream without a file descriptor.
    assert client.put("/bytesio", io.BytesIO(data)) == md5(data)
    assert client.get("/bytesio") == data


def test_put_path_str_and_pathlib(client: Client, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 17)
    path = tmp_path / "value.bin"
    path.write_bytes(data)
    assert client.put("/by-str", str(path)) == md5(data)
    assert client.put("/by-path", Path(path)) == md5(data)
    assert client.get("/by-str") == data
    assert client.get("/by-path") == data


def test_create_only(client: Client) -> None:
    assert client.put("/once", b"first", create_only=True) == md5(b"first")
    with pytest.raises(Conflict) as caught:
        client.put("/once", b"second", create_only=True)
    assert caught.value.status == 412
    assert isinstance(caught.value, KittenError)
    assert client.get("/once") == b"first"


def test_get_missing_is_key_not_found_and_key_error(client: Client) -> None:
    with pytest.raises(KeyNotFound) as caught:
        client.get("/missing")
    assert caught.value.status == 404
    assert isinstance(caught.value, KeyError)
    with pytest.raises(KeyError):
        client.get("/missing")


def test_head_and_exists(client: Client) -> None:
    data = b"x" * 70000  # file-backed on the workers
    client.put("/h", data)
    assert client.head("/h") == ValueInfo(len(data), md5(data))
    client.put("/small", b"abc")
    assert client.head("/small") == ValueInfo(3, md5(b"abc"))
    assert client.exists("/h")
    assert not client.exists("/nope")
    with pytest.raises(KeyNotFound):
        client.head("/nope")


def test_delete(client: Client) -> None:
    client.put("/d", b"bye")
    client.delete("/d")
    with pytest.raises(KeyNotFound):
        client.get("/d")
    assert not client.exists("/d")
    with pytest.raises(KeyNotFound):
        client.delete("/d")
    with pytest.raises(KeyNotFound):
        client.delete("/never-was")


def test_unlink_hides_the_key(client: Client) -> None:
    client.put("/u/a", b"a")
    client.put("/u/b", b"b")
    client.unlink("/u/a")
    with pytest.raises(KeyNotFound):
        client.get("/u/a")
    assert not client.exists("/u/a")
    assert list(client.list("/u/")) == ["/u/b"]
    assert list(client.list("/u/", unlinked=True)) == ["/u/a"]
    with pytest.raises(KeyNotFound):
        client.unlink("/u/a")  # no longer live
    # A new put makes it live again; a delete removes an unlinked key.
    client.put("/u/a", b"again")
    assert client.get("/u/a") == b"again"
    assert list(client.list("/u/", unlinked=True)) == []
    client.unlink("/u/b")
    client.delete("/u/b")
    assert list(client.list("/u/", unlinked=True)) == []
    assert list(client.list("/u/")) == ["/u/a"]


# -- listing and key quoting ---------------------------------------------------------------

ODD_KEYS = [
    "/l/plain",
    "/l/with space",
    "/l/question?mark",
    "/l/hash#tag",
    "/l/percent%20literal",
    "/l/percent%",
    "/l/plus+sign",
    "/l/amp&eq=1",
    "/l/ü",
    "/l/日本",
    "/l/emoji\U0001f431",
    "/l/sub/dir/file",
    "/l/Zed",
    "/l/~tilde",
]


def test_odd_keys_round_trip_and_list_in_byte_order(client: Client) -> None:
    for key in ODD_KEYS:
        client.put(key, key.encode())
    client.put("/other", b"not under the prefix")
    for key in ODD_KEYS:
        assert client.get(key) == key.encode(), key
        assert client.exists(key)
    expected = sorted(ODD_KEYS, key=lambda k: k.encode("utf-8"))
    assert list(client.list("/l/", page_size=3)) == expected
    assert list(client.list("/l/", page_size=1)) == expected
    assert list(client.list("/l/")) == expected
    assert list(client.list("/l/sub/")) == ["/l/sub/dir/file"]
    assert list(client.list("/l/ü")) == ["/l/ü"]
    assert list(client.list("/l/percent%")) == ["/l/percent%", "/l/percent%20literal"]
    assert list(client.list("/l/question?")) == ["/l/question?mark"]
    assert list(client.list("/nothing-here/")) == []
    # The keys really are stored verbatim (as a plain HTTP client sees them).
    listing = httpx.get(f"{client.url}/l/", params={"list": ""}).json()
    assert listing == {"keys": expected, "next": ""}
    for key in ODD_KEYS:
        client.delete(key)
    assert list(client.list("/l/")) == []


def test_key_path_quotes_reserved_characters() -> None:
    assert key_path("/a b") == "/a%20b"
    assert key_path("/q?x#y%") == "/q%3Fx%23y%25"
    assert key_path("/ü") == "/%C3%BC"
    assert key_path("no/slash") == "/no/slash"


ROUTE_NAMED_KEYS = [
    "/health",
    "/_cluster",
    "/_x",
    "/gets",
    "/clear",
    "/put/y",
    "/get/y",
    "/delete/y",
    "/_workers/register",
]


def test_keys_named_like_master_routes_round_trip(client: Client) -> None:
    for key in ROUTE_NAMED_KEYS:
        assert client.put(key, key.encode()) == md5(key.encode()), key
    for key in ROUTE_NAMED_KEYS:
        assert client.get(key) == key.encode(), key
        assert client.head(key) == ValueInfo(len(key.encode()), md5(key.encode())), key
        with client.open(key) as reader:
            assert reader.read() == key.encode(), key
        assert key in list(client.list(key)), key
    client.unlink("/clear")
    assert list(client.list("/clear", unlinked=True)) == ["/clear"]
    for key in ROUTE_NAMED_KEYS:
        client.delete(key)  # "/clear" must delete the key, not call the clear route
        assert not client.exists(key), key
    assert client.cluster()["workers"]  # the routes themselves still work


def test_key_with_leading_double_slash_round_trips(fresh: Client) -> None:
    fresh.put("//x", b"double")
    assert list(fresh.list("/")) == ["//x"]
    assert fresh.get("//x") == b"double"


def test_key_with_dot_segments_round_trips(client: Client) -> None:
    client.put("/dots/a/../b", b"dots")
    client.put("/dots/c/./d", b"dot")
    assert list(client.list("/dots/")) == ["/dots/a/../b", "/dots/c/./d"]


def test_list_pages_over_more_keys_than_a_page(client: Client) -> None:
    keys = [f"/p/{i:03d}" for i in range(10)]
    for key in reversed(keys):
        client.put(key, b"v")
    assert list(client.list("/p/", page_size=3)) == keys
    assert list(client.list("/p/", page_size=10)) == keys
    assert list(client.list("/p/", page_size=11)) == keys
    assert list(client.list("/p/00", page_size=2)) == keys[:10]


# -- streaming and integrity ---------------------------------------------------------------


def test_open_streams_a_large_value(client: Client) -> None:
    data = os.urandom(5 * 1024 * 1024 + 333)
    client.put("/stream", data)
    with client.open("/stream") as reader:
        assert reader.size == len(data)
        assert reader.md5 == md5(data)
        assert reader.readable()
        parts = []
        while chunk := reader.read(100_000):
            assert len(chunk) <= 100_000
            parts.append(chunk)
    assert b"".join(parts) == data
    assert reader.closed

    with client.open("/stream") as reader:
        buffer = bytearray(777_777)
        received = bytearray()
        while count := reader.readinto(buffer):
            received += buffer[:count]
    assert bytes(received) == data

    with client.open("/stream") as reader:
        assert reader.read() == data

    with pytest.raises(KeyNotFound):
        client.open("/no-stream")


def _blob_files(cluster: Cluster) -> list[Path]:
    files = []
    for i in range(len(cluster.nodes)):
        files += [p for p in (cluster.root / f"worker-{i}" / "blobs").rglob("*") if p.is_file()]
    return files


def test_when_every_replica_is_corrupt_reads_fail_and_never_return_bad_bytes(
    cluster: Cluster, fresh: Client
) -> None:
    """Every copy damaged (a flipped byte near each file's end): each read path ends in a
    clear 502, and no byte of a damaged block is ever sent."""
    client = fresh
    data = os.urandom(5 * 1024 * 1024)
    client.put("/fragile", data)
    files = _blob_files(cluster)
    assert len(files) == 3, files
    for path in files:
        assert path.stat().st_size > len(data)
        with path.open("r+b") as handle:
            handle.seek(-1000, os.SEEK_END)
            byte = handle.read(1)
            handle.seek(-1000, os.SEEK_END)
            handle.write(bytes([byte[0] ^ 0xFF]))
    # HEAD still answers from the index.
    assert client.head("/fragile") == ValueInfo(len(data), md5(data))
    with pytest.raises(ServerError) as failed:
        client.get("/fragile")
    assert failed.value.status == 502
    with pytest.raises(ServerError), client.open("/fragile") as reader:
        while reader.read(1024 * 1024):
            pass

    async def async_get() -> bytes:
        async with AsyncClient(cluster.url) as aclient:
            return await aclient.get("/fragile")

    with pytest.raises(ServerError):
        asyncio.run(async_get())
    direct = httpx.get(f"{cluster.url}/fragile", params={"direct": ""}, timeout=30)
    assert direct.status_code == 502 and direct.json()["error"] in (
        "no_good_replica",
        "no_replica_served",
    )


# -- mapping -------------------------------------------------------------------------------


def test_mapping_view(client: Client) -> None:
    client.put("/outside", b"o")
    m = client.mapping("/m")
    assert len(m) == 0
    assert list(m) == []
    m["a"] = b"1"
    m["b"] = b"22"
    m["dir/c"] = b"333"
    assert m["a"] == b"1"
    assert client.get("/m/b") == b"22"
    assert len(m) == 3
    assert list(m) == ["a", "b", "dir/c"]
    assert "a" in m
    assert "zzz" not in m
    assert 42 not in m  # type: ignore[comparison-overlap]  # a Mapping takes any key
    assert m.get("zzz") is None
    assert m.get("a") == b"1"
    assert dict(m.items()) == {"a": b"1", "b": b"22", "dir/c": b"333"}
    with pytest.raises(KeyError):
        m["zzz"]
    del m["a"]
    assert "a" not in m
    with pytest.raises(KeyError):
        del m["a"]
    assert m.pop("b") == b"22"
    assert list(m) == ["dir/c"]
    m.update({"x": b"y"})
    assert sorted(m.keys()) == ["dir/c", "x"]
    assert client.get("/outside") == b"o"
    assert client.mapping("/m/")["x"] == b"y"


# -- asyncio -------------------------------------------------------------------------------


def test_async_client(shared: Cluster) -> None:
    cluster = shared

    async def scenario() -> None:
        async with AsyncClient(cluster.url) as aclient:
            payload = os.urandom(100_000)
            assert await aclient.put("/async/a", payload) == md5(payload)
            assert await aclient.get("/async/a") == payload
            assert await aclient.head("/async/a") == ValueInfo(len(payload), md5(payload))
            assert await aclient.exists("/async/a")
            assert not await aclient.exists("/async/none")
            with pytest.raises(Conflict):
                await aclient.put("/async/a", b"x", create_only=True)
            results = await asyncio.gather(
                *(aclient.put(f"/async/k{i}", bytes([i]) * 10) for i in range(8))
            )
            assert results == [md5(bytes([i]) * 10) for i in range(8)]
            keys = [key async for key in aclient.list("/async/", page_size=3)]
            assert keys == ["/async/a"] + [f"/async/k{i}" for i in range(8)]
            await aclient.unlink("/async/k0")
            with pytest.raises(KeyNotFound):
                await aclient.get("/async/k0")
            keys = [key async for key in aclient.list("/async/k")]
            assert keys == [f"/async/k{i}" for i in range(1, 8)]
            await aclient.delete("/async/a")
            with pytest.raises(KeyNotFound):
                await aclient.get("/async/a")
            with pytest.raises(KeyNotFound):
                await aclient.delete("/async/a")
            with pytest.raises(KeyNotFound):
                await aclient.head("/async/a")

    asyncio.run(scenario())
    with Client(cluster.url) as sync:
        assert list(sync.list("/async/", unlinked=True)) == ["/async/k0"]


# -- failures ------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_unreachable_server_is_server_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with Client(url) as c:
        for call in (
            lambda: c.get("/x"),
            lambda: c.put("/x", b"v"),
            lambda: c.head("/x"),
            lambda: c.delete("/x"),
            lambda: list(c.list("/")),
            lambda: c.open("/x"),
        ):
            with pytest.raises(ServerError) as caught:
                call()
            assert not isinstance(caught.value, Unavailable)
            assert caught.value.status == 0

    async def scenario() -> None:
        async with AsyncClient(url) as aclient:
            with pytest.raises(ServerError):
                await aclient.get("/x")

    asyncio.run(scenario())


def test_cluster_of_unreachable_server_is_server_error() -> None:
    with Client(f"http://127.0.0.1:{_closed_port()}") as c, pytest.raises(ServerError):
        c.cluster()


def test_cluster_description(shared: Cluster, client: Client) -> None:
    cluster = shared
    info = client.cluster()
    assert info["replicas"] == 3
    assert [w["index"] for w in info["workers"]] == [0, 1, 2]
    assert {w["url"] for w in info["workers"]} == {node.url for node in cluster.nodes}
    assert all(w["state"] == "up" for w in info["workers"])


def test_unavailable_when_too_few_workers_are_up(cluster: Cluster, fresh: Client) -> None:
    client = fresh
    client.put("/before", b"stored while all were up")
    for i in (1, 2):
        cluster.nodes[i].kill()
    for i in (1, 2):
        cluster.wait_worker_state(i, "down")
    with pytest.raises(Unavailable) as caught:
        client.put("/after", b"nope")
    assert caught.value.status == 503
    assert isinstance(caught.value, ServerError)
    assert not client.exists("/after")
    # Reads of a value still held by the worker that is up keep working.
    assert client.get("/before") == b"stored while all were up"


def test_public_names() -> None:
    assert kittenfs.__version__
    assert issubclass(kittenfs.ValueTooLarge, kittenfs.BadRequest)
    assert issubclass(kittenfs.KeyNotFound, KeyError)
