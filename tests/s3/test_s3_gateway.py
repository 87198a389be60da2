"""The standalone S3 gateway (``kittenfs s3 --master URL``) in front of a real cluster with
auth on: boto3 through it, unchanged; reads streamed from the workers (not through the
master), writes forwarded to the master; revocation, a worker's death and a gateway
without the cluster secret."""

import hashlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster import Cluster, Proc, started
from s3.conformance import TOKEN, gateway, make_key
from s3.test_s3_api import MiB, client_for, error_of

BYTES_OUT = re.compile(r"^kittenfs_bytes_out_total\{[^}]*\} (\S+)$", re.M)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("gateway")
    with started(root, master_args=["--s3-port", "0"], token=TOKEN) as made:
        yield made


@pytest.fixture(scope="module")
def front(cluster: Cluster) -> Iterator[Proc]:
    proc = gateway(cluster)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def s3_client(cluster: Cluster, front: Proc, access: str, secret: str) -> BaseClient:
    return client_for(cluster, access, secret, endpoint=front.url)


def master_bytes_out(cluster: Cluster) -> float:
    text = httpx.get(f"{cluster.url}/metrics", headers=cluster.headers, timeout=30).text
    return sum(float(v) for v in BYTES_OUT.findall(text))


def test_boto3_through_the_gateway(cluster: Cluster, front: Proc) -> None:
    s3 = s3_client(cluster, front, *make_key(cluster))
    s3.create_bucket(Bucket="gw-main")  # forwarded
    s3.put_object(
        Bucket="gw-main", Key="small", Body=b"hello", Metadata={"a": "1"}, ContentType="text/plain"
    )
    got = s3.get_object(Bucket="gw-main", Key="small")  # read here
    assert got["Body"].read() == b"hello"
    assert got["Metadata"] == {"a": "1"} and got["ContentType"] == "text/plain"
    assert got["ETag"] == f'"{hashlib.md5(b"hello").hexdigest()}"'

    big = os.urandom(20 * MiB)
    s3.put_object(Bucket="gw-main", Key="dir/big", Body=big)
    before = master_bytes_out(cluster)
    assert s3.get_object(Bucket="gw-main", Key="dir/big")["Body"].read() == big
    ranged = s3.get_object(Bucket="gw-main", Key="dir/big", Range="bytes=1000-1999")
    assert ranged["Body"].read() == big[1000:2000]
    # The bytes came from the workers: the master sent records, not 20 MiB.
    assert master_bytes_out(cluster) - before < MiB

    upload = s3.create_multipart_upload(Bucket="gw-main", Key="mp")["UploadId"]
    pieces = [os.urandom(5 * MiB), os.urandom(1000)]
    parts = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket="gw-main", Key="mp", UploadId=upload, PartNumber=n, Body=piece
            )["ETag"],
        }
        for n, piece in enumerate(pieces, 1)
    ]
    listed_parts = s3.list_parts(Bucket="gw-main", Key="mp", UploadId=upload)["Parts"]
    assert [p["PartNumber"] for p in listed_parts] == [1, 2]
    s3.complete_multipart_upload(
        Bucket="gw-main", Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert s3.get_object(Bucket="gw-main", Key="mp")["Body"].read() == b"".join(pieces)
    assert s3.head_object(Bucket="gw-main", Key="mp")["ContentLength"] == 5 * MiB + 1000

    listed = s3.list_objects_v2(Bucket="gw-main", Delimiter="/")
    assert [o["Key"] for o in listed["Contents"]] == ["mp", "small"]
    assert listed["CommonPrefixes"] == [{"Prefix": "dir/"}]
    assert "gw-main" in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    presigned = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "gw-main", "Key": "small"}, ExpiresIn=60
    )
    assert httpx.get(presigned, timeout=30).content == b"hello"
    assert error_of(s3.get_object, Bucket="gw-main", Key="nope") == (404, "NoSuchKey")
    s3.delete_object(Bucket="gw-main", Key="small")  # forwarded
    assert error_of(s3.head_object, Bucket="gw-main", Key="small")[0] == 404


def test_signatures_are_checked_here_and_revocation_takes_hold(
    cluster: Cluster, front: Proc
) -> None:
    access, secret = make_key(cluster)
    s3 = s3_client(cluster, front, access, secret)
    s3.create_bucket(Bucket="gw-auth")
    s3.put_object(Bucket="gw-auth", Key="k", Body=b"v")
    forged = s3_client(cluster, front, access, "x" * 40)
    assert error_of(forged.get_object, Bucket="gw-auth", Key="k") == (
        403,
        "SignatureDoesNotMatch",
    )
    assert error_of(forged.put_object, Bucket="gw-auth", Key="k", Body=b"w") == (
        403,
        "SignatureDoesNotMatch",
    )
    anonymous = httpx.get(f"{front.url}/gw-auth/k", timeout=30)
    assert anonymous.status_code == 403 and b"<Code>AccessDenied</Code>" in anonymous.content
    revoked = httpx.delete(
        f"{cluster.url}/_keys/{access}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert revoked.status_code in (200, 204), revoked.text
    deadline = time.monotonic() + 60
    while True:  # the gateway keeps a signing key --key-ttl (1) second
        try:
            s3.get_object(Bucket="gw-auth", Key="k")
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "InvalidAccessKeyId"
            break
        assert time.monotonic() < deadline, "a revoked key still reads through the gateway"
        time.sleep(0.2)


def test_a_read_fails_over_when_a_worker_dies(cluster: Cluster, front: Proc) -> None:
    s3 = s3_client(cluster, front, *make_key(cluster))
    s3.create_bucket(Bucket="gw-fail")
    body = os.urandom(3 * MiB)
    s3.put_object(Bucket="gw-fail", Key="k", Body=body)
    victim = cluster.nodes[0]
    victim.kill(signal.SIGKILL)
    try:
        for _ in range(5):  # whichever replica comes first, the read is whole
            assert s3.get_object(Bucket="gw-fail", Key="k")["Body"].read() == body
    finally:
        victim.start()
        cluster.wait_workers_up(len(cluster.nodes))


def test_a_gateway_without_the_cluster_secret_does_not_start(cluster: Cluster) -> None:
    lone = gateway(cluster, member=False)
    with pytest.raises(RuntimeError, match="exited at start"):
        lone.start(timeout=60)
    said = lone.log.read_text()
    assert "Traceback" not in said and "cannot start" in said, said  # one clear line
    assert "sign the request with the cluster secret" in said


def test_a_chunked_body_is_forwarded_as_it_came(cluster: Cluster, front: Proc) -> None:
    """Transfer-Encoding: chunked, signed as the client sent it (s3-tests does this)."""
    s3 = s3_client(cluster, front, *make_key(cluster))
    s3.create_bucket(Bucket="gw-chunked")
    s3.meta.events.register_first(
        "before-sign.*.*",
        lambda request, **_: request.headers.add_header("Transfer-Encoding", "chunked"),
    )
    s3.put_object(Bucket="gw-chunked", Key="k", Body=b"bar")
    assert s3.get_object(Bucket="gw-chunked", Key="k")["Body"].read() == b"bar"


def test_a_master_without_a_cluster_secret_serves_no_gateway_when_auth_is_on(
    tmp_path: Path,
) -> None:
    """Without a secret, anyone on loopback would pass for a member: with auth on, the
    gateway routes (records, signing keys) answer 403 to everyone."""
    args = ["--s3-port", "0"]
    with started(tmp_path, master_args=args, token=TOKEN, secret=False) as lone:
        for route in ("/_gateway/hello", "/_gateway/record?key=/a", "/_gateway/records"):
            answer = httpx.get(f"{lone.url}{route}", timeout=30)
            assert answer.status_code == 403 and answer.json()["error"] == "no_cluster_secret"
        signing = httpx.post(
            f"{lone.url}/_gateway/signing-key",
            json={"access_key": "KFS", "date": "20261203", "region": "us-east-1", "service": "s3"},
            timeout=30,
        )
        assert signing.status_code == 403
