"""Real S3 clients, unchanged, against a real cluster with auth on: the AWS CLI, minio-py,
pandas through s3fs and pyarrow's own S3 filesystem.

The AWS CLI pins its own botocore, and s3fs (with pandas and pyarrow) needs aiobotocore's:
each runs from a venv of its own (side.py).
"""

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from minio import Minio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster import Cluster, started
from s3.conformance import TOKEN, make_key, s3_url
from s3.side import side_venv

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("s3clients")
    with started(root, master_args=["--s3-port", "0"], token=TOKEN) as cluster:
        yield cluster


def aws_cli() -> Path:
    """Return the AWS CLI's executable."""
    return side_venv("awscli", "awscli>=1.36") / "aws"


def test_the_aws_cli_copies_syncs_lists_and_removes(s3_cluster: Cluster, tmp_path: Path) -> None:
    access, secret = make_key(s3_cluster)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }
    aws = aws_cli()

    def run(*args: str) -> str:
        done = subprocess.run(
            [aws, "--endpoint-url", s3_url(s3_cluster), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"aws {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    tree = tmp_path / "tree"
    for i in range(1000):
        path = tree / f"d{i % 10}" / f"f{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"file {i}\n".encode() * (i % 7 + 1))
    big = tree / "big.bin"  # over the CLI's 8 MiB multipart threshold: sent in parts
    big.write_bytes(os.urandom(9 * MiB + 123))
    run("s3", "mb", "s3://synced")
    run("s3", "sync", str(tree), "s3://synced/tree")
    listed = run("s3", "ls", "--recursive", "s3://synced/tree/")
    assert len(listed.splitlines()) == 1001
    run("s3", "cp", "s3://synced/tree/big.bin", str(tmp_path / "big.back"))
    assert (tmp_path / "big.back").read_bytes() == big.read_bytes()
    head = json.loads(run("s3api", "head-object", "--bucket", "synced", "--key", "tree/big.bin"))
    assert head["ETag"].endswith('-2"')  # multipart: <md5 of the parts' md5s>-<parts>
    again = run("s3", "sync", str(tree), "s3://synced/tree")
    assert "upload:" not in again  # nothing changed: nothing sent
    run("s3", "rm", "--recursive", "s3://synced/tree")
    assert run("s3", "ls", "--recursive", "s3://synced/") == ""
    run("s3", "rb", "s3://synced")


def test_minio_py(s3_cluster: Cluster) -> None:
    access, secret = make_key(s3_cluster)
    client = Minio(
        s3_url(s3_cluster).removeprefix("http://"), access_key=access, secret_key=secret,
        secure=False,
    )  # fmt: skip
    client.make_bucket("minio-bucket")
    assert client.bucket_exists("minio-bucket")
    data = os.urandom(11 * MiB)
    client.put_object("minio-bucket", "a/big", io.BytesIO(data), len(data), part_size=5 * MiB)
    client.put_object("minio-bucket", "a/small", io.BytesIO(b"small"), 5)
    got = client.get_object("minio-bucket", "a/big")
    try:
        assert hashlib.sha256(got.read()).digest() == hashlib.sha256(data).digest()
    finally:
        got.close()
        got.release_conn()
    names = [o.object_name for o in client.list_objects("minio-bucket", prefix="a/")]
    assert names == ["a/big", "a/small"]
    assert client.stat_object("minio-bucket", "a/big").size == len(data)
    url = client.presigned_get_object("minio-bucket", "a/small")
    assert httpx.get(url).content == b"small"
    client.remove_object("minio-bucket", "a/small")
    client.remove_object("minio-bucket", "a/big")
    client.remove_bucket("minio-bucket")
    assert not client.bucket_exists("minio-bucket")


def test_pandas_s3fs_and_pyarrow_read_and_write_parquet(s3_cluster: Cluster) -> None:
    """pandas through s3fs, and pyarrow's own S3 filesystem (scripts/dataframes.py)."""
    python = side_venv("dataframes", "s3fs>=2024.6", "pandas>=2.1", "pyarrow>=15") / "python"
    access, secret = make_key(s3_cluster)
    done = subprocess.run(
        [python, Path(__file__).parent / "scripts" / "dataframes.py"],
        env={**os.environ, "S3_URL": s3_url(s3_cluster), "S3_KEY": access, "S3_SECRET": secret},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.strip().endswith("ok"), done.stdout
