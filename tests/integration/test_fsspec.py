"""The ``kittenfs://`` fsspec filesystem (issue 14), against a real cluster: found through its
entry point, listing, ranges, streamed uploads and downloads through the workers, files
opened for reading and writing, errors, and pandas and pyarrow reading and writing
kittenFS paths, a dataset of many files among them."""

import hashlib
import io
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from cluster import Cluster, MakeCluster

from kittenfs.filesystem import KittenFileSystem

ADMIN = "admin-" + os.urandom(12).hex()
#: Larger than the master's hot-value cache takes (64 KiB): read through the redirect to a
#: worker, ranges included.
LARGE = 5 * 1024 * 1024 + 17


def url(cluster: Cluster, path: str) -> str:
    """Return the kittenfs:// URL of ``path`` on ``cluster``'s master."""
    return f"kittenfs://{cluster.url.removeprefix('http://')}{path}"


def filesystem(cluster: Cluster, **options: Any) -> KittenFileSystem:
    """Return a new filesystem of ``cluster``, as fsspec makes it from a URL."""
    fs, _ = fsspec.core.url_to_fs(url(cluster, "/"), skip_instance_cache=True, **options)
    assert isinstance(fs, KittenFileSystem)
    return fs


@pytest.fixture(autouse=True)
def no_client_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the runner's KITTENFS_* client settings out of the filesystems made here."""
    for name in ("KITTENFS_TOKEN", "KITTENFS_URL", "KITTENFS_CA", "KITTENFS_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fs(shared: Cluster) -> KittenFileSystem:
    """A filesystem of the module's cluster."""
    return filesystem(shared)


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def test_the_protocol_is_found_through_the_entry_point(shared: Cluster) -> None:
    (spec,) = [e for e in entry_points(group="fsspec.specs") if e.name == "kittenfs"]
    assert spec.load() is KittenFileSystem
    assert fsspec.get_filesystem_class("kittenfs") is KittenFileSystem
    fs, path = fsspec.core.url_to_fs(url(shared, "/data/x.parquet"))
    assert isinstance(fs, KittenFileSystem)
    assert (fs.url, path) == (shared.url, "/data/x.parquet")
    assert fs.unstrip_protocol(path) == url(shared, "/data/x.parquet")


def test_info_and_ls_show_keys_as_files_and_prefixes_as_directories(
    fs: KittenFileSystem,
) -> None:
    value = b"hello kittens"
    fs.pipe({"/tree/a": value, "/tree/b/c": b"1", "/tree/b/d": b"22", "/tree/e/f/g": b"333"})
    assert fs.info("/tree/a") == {
        "name": "/tree/a",
        "size": len(value),
        "type": "file",
        "md5": hashlib.md5(value).hexdigest(),
        "ETag": f'"{hashlib.md5(value).hexdigest()}"',
    }
    assert fs.info("/tree/b")["type"] == "directory"
    assert fs.isdir("/tree/e/f") and fs.isfile("/tree/e/f/g") and not fs.isdir("/tree/a")
    assert fs.ls("/tree", detail=False) == ["/tree/a", "/tree/b", "/tree/e"]
    listed = {entry["name"]: (entry["type"], entry["size"]) for entry in fs.ls("/tree/b/")}
    assert listed == {"/tree/b/c": ("file", 1), "/tree/b/d": ("file", 2)}
    assert fs.ls("/tree/a", detail=False) == ["/tree/a"]  # a file lists as itself
    assert fs.find("/tree") == ["/tree/a", "/tree/b/c", "/tree/b/d", "/tree/e/f/g"]
    assert fs.find("/tree", withdirs=True, maxdepth=2) == [
        "/tree",  # as fsspec's own find: the root too
        "/tree/a",
        "/tree/b",
        "/tree/b/c",
        "/tree/b/d",
        "/tree/e",
        "/tree/e/f",
    ]
    assert fs.find("/tree", detail=True)["/tree/e/f/g"]["size"] == 3
    assert fs.exists(url_of(fs, "/tree/b/c")) and not fs.exists("/tree/nothing")
    with pytest.raises(FileNotFoundError):
        fs.info("/tree/nothing")
    with pytest.raises(FileNotFoundError):
        fs.ls("/tree/nothing")


def url_of(fs: KittenFileSystem, path: str) -> str:
    return fs.unstrip_protocol(path)


def test_ls_follows_pages_and_skips_the_keys_of_a_subdirectory(
    shared: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = filesystem(shared, page_size=3)
    files = {f"/paged/f{i:02}": str(i).encode() for i in range(20)}
    inner = {f"/paged/g/k{i:02}": b"x" for i in range(30)}
    fs.pipe({**files, **inner})
    pages: list[tuple[str, str | None]] = []
    list_page = fs.client.list_page

    async def counted(prefix: str, start: str | None = None, *args: Any) -> tuple[list[str], str]:
        pages.append((prefix, start))
        return await list_page(prefix, start, *args)

    monkeypatch.setattr(fs.client, "list_page", counted)
    listed = fs.ls("/paged", detail=False)
    assert listed == [*files, "/paged/g"]
    # 20 files a page of 3 at a time, then one page in g/, and past it: none of g's 30 keys
    # is read but the first.
    assert len(pages) == 8, pages
    assert ("/paged/", "/paged/g0") in pages
    assert fs.find("/paged/g") == sorted(inner)
    assert {e["name"]: e["size"] for e in fs.ls("/paged")} == {
        **{name: len(value) for name, value in files.items()},
        "/paged/g": 0,
    }


def test_cat_reads_ranges_of_a_value_on_the_workers(fs: KittenFileSystem) -> None:
    value = random_bytes(300_000)
    fs.pipe_file("/ranges/v", value)
    assert fs.cat_file("/ranges/v") == value
    assert fs.cat_file("/ranges/v", start=1000, end=1010) == value[1000:1010]
    assert fs.cat_file("/ranges/v", start=-10) == value[-10:]
    assert fs.cat_file("/ranges/v", start=10, end=-10) == value[10:-10]
    assert fs.cat_file("/ranges/v", start=299_990, end=400_000) == value[299_990:]
    assert fs.cat_file("/ranges/v", start=300_000) == b""
    assert fs.cat_file("/ranges/v", start=5, end=5) == b""
    assert fs.cat_ranges(["/ranges/v"] * 2, [0, 7], [3, 9]) == [value[:3], value[7:9]]
    with pytest.raises(FileNotFoundError):
        fs.cat_file("/ranges/none", start=0, end=5)


def test_put_and_get_stream_a_large_file(fs: KittenFileSystem, tmp_path: Path) -> None:
    value = random_bytes(LARGE)
    source = tmp_path / "source.bin"
    source.write_bytes(value)
    fs.put(str(source), "/big/v.bin")
    assert fs.info("/big/v.bin")["md5"] == hashlib.md5(value).hexdigest()
    target = tmp_path / "target.bin"
    fs.get("/big/v.bin", str(target))
    assert target.read_bytes() == value
    with pytest.raises(FileNotFoundError):
        fs.get("/big/none", str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()


def test_put_and_get_a_tree(fs: KittenFileSystem, tmp_path: Path) -> None:
    (tmp_path / "up" / "sub").mkdir(parents=True)
    (tmp_path / "up" / "a").write_bytes(b"a")
    (tmp_path / "up" / "sub" / "b").write_bytes(b"bb")
    fs.put(str(tmp_path / "up"), "/copied", recursive=True)
    assert fs.find("/copied") == ["/copied/a", "/copied/sub/b"]
    fs.get("/copied", str(tmp_path / "down"), recursive=True)
    assert (tmp_path / "down" / "sub" / "b").read_bytes() == b"bb"
    assert (tmp_path / "down" / "a").read_bytes() == b"a"


def test_a_file_opened_for_reading_seeks_and_reads_ranges(fs: KittenFileSystem) -> None:
    value = random_bytes(LARGE)
    fs.pipe_file("/open/r", value)
    with fs.open("/open/r", "rb", block_size=256 * 1024) as f:
        assert f.size == LARGE
        assert f.read(100) == value[:100]
        f.seek(3_000_000)
        assert f.read(1000) == value[3_000_000:3_001_000]
        f.seek(-50, os.SEEK_END)
        assert f.read() == value[-50:]
        f.seek(10)
        assert f.read(2_000_000) == value[10:2_000_010]


def test_a_read_that_meets_another_version_fails(fs: KittenFileSystem) -> None:
    fs.pipe_file("/open/changing", random_bytes(LARGE))
    with fs.open("/open/changing", "rb", block_size=64 * 1024, cache_type="none") as f:
        f.read(10)
        fs.pipe_file("/open/changing", random_bytes(LARGE))
        with pytest.raises(OSError, match="changed while it was read"):
            f.read(10)


def test_a_file_opened_for_writing_is_stored_on_close(fs: KittenFileSystem) -> None:
    value = random_bytes(LARGE)
    with fs.open("/open/w", "wb", block_size=1024 * 1024) as f:
        for i in range(0, len(value), 100_000):
            f.write(value[i : i + 100_000])
        assert not fs.exists("/open/w")  # nothing is visible before close
    assert fs.cat_file("/open/w") == value
    with fs.open("/open/small", "wb") as f:
        f.write(b"tiny")
    assert fs.cat_file("/open/small") == b"tiny"
    with pytest.raises(FileExistsError):
        fs.open("/open/small", "xb").close()
    assert fs.cat_file("/open/small") == b"tiny"


def test_a_write_that_raises_stores_nothing(fs: KittenFileSystem) -> None:
    with pytest.raises(RuntimeError), fs.open("/open/failed", "wb", block_size=1 << 20) as f:
        f.write(random_bytes(3 << 20))
        raise RuntimeError("the writer failed")
    assert not fs.exists("/open/failed")


def test_rm_deletes_a_tree(fs: KittenFileSystem) -> None:
    fs.pipe({"/gone/a": b"1", "/gone/b/c": b"2", "/gone/b/d/e": b"3", "/gonex": b"kept"})
    fs.rm("/gone", recursive=True)
    assert not fs.exists("/gone") and not fs.exists("/gone/b/d/e")
    assert fs.cat_file("/gonex") == b"kept"  # a sibling that shares the prefix stays
    with pytest.raises(FileNotFoundError):
        fs.rm("/gone/a")
    fs.rm("/gonex")
    assert not fs.exists("/gonex")


def test_credentials_from_options_and_the_environment(
    make_cluster: MakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    secured = make_cluster(token=ADMIN)
    anonymous = filesystem(secured)
    with pytest.raises(PermissionError, match="401"):
        anonymous.pipe_file("/auth/k", b"v")
    with pytest.raises(PermissionError):
        anonymous.cat_file("/auth/k")
    filesystem(secured, token=ADMIN).pipe_file("/auth/k", random_bytes(LARGE))
    monkeypatch.setenv("KITTENFS_TOKEN", ADMIN)
    with pytest.raises(PermissionError):  # the token goes only to the master it is set for
        filesystem(secured).cat_file("/auth/k")
    monkeypatch.setenv("KITTENFS_URL", secured.url)
    assert len(filesystem(secured).cat_file("/auth/k")) == LARGE  # through a worker
    monkeypatch.setenv("KITTENFS_TOKEN", "kfs.garbage")
    with pytest.raises(PermissionError):
        filesystem(secured).info("/auth/k")


def frame(part: int, rows: int = 25) -> pd.DataFrame:
    return pd.DataFrame(
        {"part": [part] * rows, "n": range(part * rows, (part + 1) * rows), "s": ["cat"] * rows}
    )


def test_pandas_writes_and_reads_parquet_at_a_kittenfs_path(shared: Cluster) -> None:
    written = frame(7, rows=10_000)
    written.to_parquet(url(shared, "/data/x.parquet"))
    read = pd.read_parquet(url(shared, "/data/x.parquet"))
    pd.testing.assert_frame_equal(read, written)
    columns = pd.read_parquet(url(shared, "/data/x.parquet"), columns=["n"])
    assert columns["n"].tolist() == list(range(70_000, 80_000))


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_pyarrow_reads_a_dataset_of_many_files(fs: KittenFileSystem) -> None:
    parts = 40
    fs.pipe(
        {
            f"/many/group={i % 4}/f{i:02}.parquet": parquet_bytes(pa.Table.from_pandas(frame(i)))
            for i in range(parts)
        }
    )
    # pyarrow knows no fsspec protocols by name: it is given the filesystem of the URL.
    many, path = fsspec.core.url_to_fs(url_of(fs, "/many/"))
    dataset = ds.dataset(path, filesystem=many, format="parquet", partitioning="hive")
    assert len(dataset.files) == parts
    table = dataset.to_table(use_threads=True)
    assert table.num_rows == parts * 25
    assert sorted(table.column("n").to_pylist()) == list(range(parts * 25))
    filtered = dataset.to_table(filter=ds.field("group") == 3, columns=["n"])
    assert sorted(filtered.column("n").to_pylist()) == [
        n for i in range(3, parts, 4) for n in range(i * 25, (i + 1) * 25)
    ]
    read = pd.read_parquet(url_of(fs, "/many/"))
    assert len(read) == parts * 25


def test_a_tls_cluster_with_its_ca(make_cluster: MakeCluster) -> None:
    secure = make_cluster(tls=True)
    assert secure.url.startswith("https://") and secure.ca is not None
    where = f"kittenfs://{secure.url.removeprefix('https://')}/tls/k"
    fs, path = fsspec.core.url_to_fs(where, scheme="https", ca=str(secure.ca))
    value = random_bytes(LARGE)
    fs.pipe_file(path, value)
    assert fs.cat_file(path) == value  # from a worker, over TLS too
    untrusted, _ = fsspec.core.url_to_fs(where, scheme="https", skip_instance_cache=True)
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusted.info(path)


def test_dask_and_hugging_face_datasets_read_kittenfs_paths(
    fs: KittenFileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hugging Face's libraries: their hub on a loopback port nothing listens on (traffic
    # stays here; their offline mode would refuse kittenfs:// URLs too), their caches in
    # this test's folder.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import dask.dataframe as dd
    import datasets

    parts = 12
    fs.pipe(
        {
            f"/ecosystem/f{i:02}.parquet": parquet_bytes(pa.Table.from_pandas(frame(i)))
            for i in range(parts)
        }
    )
    pattern = url_of(fs, "/ecosystem/*.parquet")
    lazy = dd.read_parquet(pattern)
    assert lazy.npartitions == parts
    assert sorted(lazy["n"].compute().tolist()) == list(range(parts * 25))
    # datasets names the files it found "kittenfs://" + path, without the master: it is
    # given in storage_options (``host``; or $KITTENFS_URL), as s3fs's credentials are.
    loaded = datasets.load_dataset(
        "parquet",
        data_files=pattern,
        split="train",
        cache_dir=str(tmp_path / "datasets"),
        storage_options={"host": fs.url.split("://", 1)[1]},
    )
    assert loaded.num_rows == parts * 25
    assert sorted(loaded["n"]) == list(range(parts * 25))
