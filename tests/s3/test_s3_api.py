"""The S3 API through boto3, unchanged, against a real cluster with auth on.

Each test uses buckets of its own on one cluster per module.  What S3 stores is a
kittenFS key (``/<bucket>/<key>``), so some tests look at it through the native API too.
"""

import hashlib
import itertools
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster import Cluster, started
from s3.conformance import TOKEN, make_key, s3_url

from kittenfs.s3 import sigv4

MiB = 1024 * 1024
_names = itertools.count()


def client_for(
    cluster: Cluster, access: str, secret: str, endpoint: str | None = None
) -> BaseClient:
    """Return boto3's S3 client of the cluster's S3 API (or of ``endpoint``)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint or s3_url(cluster),
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
            signature_version="s3v4",
        ),
    )


@pytest.fixture(scope="module")
def s3_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("s3")
    args = ["--s3-port", "0", "--s3-abandoned-after", "3"]
    with started(root, master_args=args, token=TOKEN) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def s3(s3_cluster: Cluster) -> BaseClient:
    return client_for(s3_cluster, *make_key(s3_cluster))


@pytest.fixture
def bucket(s3: BaseClient) -> str:
    name = f"kfs-test-{next(_names)}-{time.monotonic_ns() % 10**6}"
    s3.create_bucket(Bucket=name)
    return name


def error_of(call: Callable[..., Any], **kwargs: Any) -> tuple[int, str]:
    """Return the HTTP status and S3 error code ``call(**kwargs)`` fails with."""
    with pytest.raises(ClientError) as failed:
        call(**kwargs)
    response = failed.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_buckets_are_created_listed_and_deleted_only_when_empty(s3: BaseClient) -> None:
    s3.create_bucket(Bucket="kfs-buckets")
    assert "kfs-buckets" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket="kfs-buckets")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_location(Bucket="kfs-buckets").get("LocationConstraint") is None
    placed = {"LocationConstraint": "eu-west-1"}
    s3.create_bucket(Bucket="kfs-placed", CreateBucketConfiguration=placed)
    assert s3.get_bucket_location(Bucket="kfs-placed")["LocationConstraint"] == "eu-west-1"
    s3.delete_bucket(Bucket="kfs-placed")
    assert error_of(s3.create_bucket, Bucket="Not_A_Bucket") == (400, "InvalidBucketName")
    assert error_of(s3.head_bucket, Bucket="kfs-no-such-bucket")[0] == 404
    s3.put_object(Bucket="kfs-buckets", Key="x", Body=b"1")
    assert error_of(s3.delete_bucket, Bucket="kfs-buckets") == (409, "BucketNotEmpty")
    s3.delete_object(Bucket="kfs-buckets", Key="x")
    s3.delete_bucket(Bucket="kfs-buckets")
    assert error_of(s3.head_bucket, Bucket="kfs-buckets")[0] == 404


def test_an_object_is_a_kittenfs_key_with_its_metadata(
    s3: BaseClient, s3_cluster: Cluster, bucket: str
) -> None:
    body = b"hello, s3\n" * 100
    put = s3.put_object(
        Bucket=bucket,
        Key="dir/hello.txt",
        Body=body,
        ContentType="text/plain",
        CacheControl="no-cache",
        Metadata={"colour": "orange"},
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="dir/hello.txt")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain"
    assert got["CacheControl"] == "no-cache"
    assert got["Metadata"] == {"colour": "orange"}
    native = httpx.get(f"{s3_cluster.url}/{bucket}/dir/hello.txt", headers=s3_cluster.headers)
    assert native.status_code == 200 and native.content == body
    part = s3.get_object(Bucket=bucket, Key="dir/hello.txt", Range="bytes=7-9")
    assert part["Body"].read() == b"s3\n" and part["ContentRange"] == f"bytes 7-9/{len(body)}"
    too_far = error_of(s3.get_object, Bucket=bucket, Key="dir/hello.txt", Range="bytes=5000-")
    assert too_far == (416, "InvalidRange")
    s3.delete_object(Bucket=bucket, Key="dir/hello.txt")
    assert error_of(s3.get_object, Bucket=bucket, Key="dir/hello.txt") == (404, "NoSuchKey")
    gone = httpx.get(f"{s3_cluster.url}/{bucket}/dir/hello.txt", headers=s3_cluster.headers)
    assert gone.status_code == 404


def test_conditionals_and_content_md5(s3: BaseClient, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    assert error_of(s3.get_object, Bucket=bucket, Key="k", IfMatch='"0000"') == (
        412,
        "PreconditionFailed",
    )
    assert error_of(s3.get_object, Bucket=bucket, Key="k", IfNoneMatch=etag)[0] == 304
    refused = error_of(s3.put_object, Bucket=bucket, Key="k", Body=b"v2", IfNoneMatch="*")
    assert refused == (412, "PreconditionFailed")
    wrong_md5 = "AAAAAAAAAAAAAAAAAAAAAA=="
    assert error_of(s3.put_object, Bucket=bucket, Key="k", Body=b"v3", ContentMD5=wrong_md5) == (
        400,
        "BadDigest",
    )
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v1"
    stale = error_of(s3.put_object, Bucket=bucket, Key="k", Body=b"v4", IfMatch='"0000"')
    assert stale == (412, "PreconditionFailed")
    s3.put_object(Bucket=bucket, Key="k", Body=b"v5", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v5"
    missing = error_of(s3.put_object, Bucket=bucket, Key="none", Body=b"x", IfMatch="*")
    assert missing == (404, "NoSuchKey")


def test_listing_pages_delimiters_and_deletes_many(s3: BaseClient, bucket: str) -> None:
    keys = [f"photos/2026/{i}.jpg" for i in range(5)] + ["photos/index.html", "readme"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [c["Prefix"] for c in top["CommonPrefixes"]] == ["photos/"]
    assert [o["Key"] for o in top["Contents"]] == ["readme"]
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 2}
    )
    listed = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert listed == sorted(keys)
    v1 = s3.list_objects(Bucket=bucket, Prefix="photos/", Delimiter="/")
    assert [c["Prefix"] for c in v1["CommonPrefixes"]] == ["photos/2026/"]
    deleted = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
    )
    assert not deleted.get("Errors") and not deleted.get("Deleted")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_copy_keeps_or_replaces_metadata(s3: BaseClient, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"bytes", Metadata={"a": "1"})
    s3.copy_object(Bucket=bucket, Key="same", CopySource={"Bucket": bucket, "Key": "src"})
    assert s3.head_object(Bucket=bucket, Key="same")["Metadata"] == {"a": "1"}
    s3.copy_object(
        Bucket=bucket,
        Key="src",
        CopySource={"Bucket": bucket, "Key": "src"},
        Metadata={"b": "2"},
        MetadataDirective="REPLACE",
    )
    got = s3.get_object(Bucket=bucket, Key="src")
    assert got["Metadata"] == {"b": "2"} and got["Body"].read() == b"bytes"


def test_multipart_upload_completes_without_copying_and_reads_parts(
    s3: BaseClient, s3_cluster: Cluster, bucket: str
) -> None:
    first, last = b"a" * (5 * MiB), b"tail"
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big", Metadata={"m": "x"})["UploadId"]
    etags = [
        s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=n, Body=body)["ETag"]
        for n, body in ((1, first), (2, last))
    ]
    listed = s3.list_parts(Bucket=bucket, Key="big", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, len(first)), (2, len(last))]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload]
    parts = {"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, 1)]}
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload, MultipartUpload=parts
    )
    digest = hashlib.md5(b"".join(bytes.fromhex(e.strip('"')) for e in etags)).hexdigest()
    assert done["ETag"] == f'"{digest}-2"'
    # A retried Complete gets the same answer; the upload itself is over.
    again = s3.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload, MultipartUpload=parts
    )
    assert again["ETag"] == done["ETag"]
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    got = s3.get_object(Bucket=bucket, Key="big")
    assert got["ContentLength"] == len(first) + len(last) and got["Metadata"] == {"m": "x"}
    assert hashlib.md5(got["Body"].read()).digest() == hashlib.md5(first + last).digest()
    second = s3.get_object(Bucket=bucket, Key="big", PartNumber=2)
    assert second["Body"].read() == last and second["PartsCount"] == 2
    assert error_of(s3.get_object, Bucket=bucket, Key="big", PartNumber=3) == (400, "InvalidPart")
    zero = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "big", "PartNumber": 0}, ExpiresIn=60
    )
    refused = httpx.get(zero)
    assert refused.status_code == 400 and b"<Code>InvalidArgument</Code>" in refused.content
    across = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={5 * MiB - 2}-{5 * MiB + 1}")
    assert across["Body"].read() == b"aata"
    listed_size = s3.list_objects_v2(Bucket=bucket)["Contents"][0]["Size"]
    assert listed_size == len(first) + len(last)
    # The parts are kittenFS keys of their own: the object's key holds only a manifest.
    native = httpx.get(f"{s3_cluster.url}/{bucket}/big", headers=s3_cluster.headers)
    assert native.status_code == 200 and len(native.content) < 1024


def test_multipart_errors(s3: BaseClient, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    small = [
        s3.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=n, Body=b"x")["ETag"]
        for n in (1, 2)
    ]

    def complete(parts: list[dict[str, Any]]) -> tuple[int, str]:
        return error_of(
            s3.complete_multipart_upload,
            Bucket=bucket,
            Key="k",
            UploadId=upload,
            MultipartUpload={"Parts": parts},
        )

    in_order = [{"ETag": e, "PartNumber": n} for n, e in enumerate(small, 1)]
    assert complete(in_order) == (400, "EntityTooSmall")
    assert complete(in_order[::-1]) == (400, "InvalidPartOrder")
    assert complete([{"ETag": '"ffff"', "PartNumber": 1}]) == (400, "InvalidPart")
    assert complete([in_order[0], in_order[0], {"ETag": '"ffff"', "PartNumber": 1}]) == (
        400,
        "InvalidPart",
    )
    # A part named twice (a client that re-sent it): the last ETag given counts.
    stale = {"ETag": '"0123456789abcdef0123456789abcdef"', "PartNumber": 1}
    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload, MultipartUpload={"Parts": [stale, in_order[0]]}
    )
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    aborted = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=aborted)
    for gone in (upload, aborted):
        assert error_of(s3.list_parts, Bucket=bucket, Key="k", UploadId=gone) == (
            404,
            "NoSuchUpload",
        )


def test_abandoned_uploads_are_cleaned_up(s3: BaseClient, s3_cluster: Cluster, bucket: str) -> None:
    """The module's master aborts uploads older than 3 s (--s3-abandoned-after)."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key="left")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="left", UploadId=upload, PartNumber=1, Body=b"part")
    parts = f"{s3_cluster.url}/%5Fs3/parts/{bucket}/?list"  # %5F: "/_" paths are routes
    assert httpx.get(parts, headers=s3_cluster.headers).json()["keys"]
    deadline = time.monotonic() + 60
    while s3.list_multipart_uploads(Bucket=bucket).get("Uploads"):
        assert time.monotonic() < deadline, "the abandoned upload was never aborted"
        time.sleep(0.5)
    assert not httpx.get(parts, headers=s3_cluster.headers).json()["keys"]


def test_signatures_presigned_urls_and_scoped_keys(
    s3: BaseClient, s3_cluster: Cluster, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="shared/doc", Body=b"doc")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "shared/doc"}, ExpiresIn=60
    )
    assert httpx.get(url).content == b"doc"
    tampered = httpx.get(url.replace("shared/doc", "shared/other"))
    assert tampered.status_code == 403 and b"SignatureDoesNotMatch" in tampered.content
    access, _ = make_key(s3_cluster)
    wrong = client_for(s3_cluster, access, "x" * 40)
    assert error_of(wrong.list_buckets) == (403, "SignatureDoesNotMatch")
    scoped = client_for(s3_cluster, *make_key(s3_cluster, "write", f"/{bucket}/shared/"))
    scoped.put_object(Bucket=bucket, Key="shared/new", Body=b"ok")
    assert error_of(scoped.put_object, Bucket=bucket, Key="private", Body=b"no") == (
        403,
        "AccessDenied",
    )
    reader = client_for(s3_cluster, *make_key(s3_cluster, "read"))
    assert reader.get_object(Bucket=bucket, Key="shared/new")["Body"].read() == b"ok"
    assert error_of(reader.delete_object, Bucket=bucket, Key="shared/new")[1] == "AccessDenied"


def test_a_put_without_content_length_is_refused(s3_cluster: Cluster, bucket: str) -> None:
    """411 MissingContentLength, as S3 answers: neither a length nor a chunked body."""
    access, secret = make_key(s3_cluster)
    url = httpx.URL(s3_url(s3_cluster))
    host = f"{url.host}:{url.port}"
    target = f"/{bucket}/no-length"
    signed = sigv4.authorize("PUT", target, host, access, secret, sigv4.EMPTY_SHA256)
    head = "".join(f"{name}: {value}\r\n" for name, value in signed.items())
    with socket.create_connection((url.host, url.port), timeout=30) as conn:
        conn.sendall(
            f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{head}\r\n".encode()
        )
        answer = b"".join(iter(lambda: conn.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 411 "), answer[:200]
    assert b"<Code>MissingContentLength</Code>" in answer
    signed_put = sigv4.authorize("PUT", target, host, access, secret, sigv4.EMPTY_SHA256)
    stored = httpx.put(f"http://{host}{target}", headers=signed_put, content=b"")
    assert stored.status_code == 200, stored.text


def test_hostile_requests_get_xml_errors(s3_cluster: Cluster, bucket: str) -> None:
    base = s3_url(s3_cluster)
    anonymous = httpx.get(f"{base}/{bucket}")
    assert anonymous.status_code == 403 and b"<Code>AccessDenied</Code>" in anonymous.content
    assert anonymous.headers["content-type"].startswith("application/xml")
    garbled = httpx.get(f"{base}/{bucket}", headers={"Authorization": "AWS4-HMAC-SHA256 nonsense"})
    assert garbled.status_code in (400, 403) and b"<Error>" in garbled.content


def test_content_headers_past_what_a_blob_carries_are_refused(s3: BaseClient, bucket: str) -> None:
    """Each content header fits an HTTP header, together they pass the 16 KiB a blob
    keeps with its value: MetadataTooLarge, and nothing is stored."""
    big = "x" * 6000
    assert error_of(
        s3.put_object,
        Bucket=bucket,
        Key="k",
        Body=b"v",
        ContentDisposition=big,
        CacheControl=big,
        ContentLanguage=big,
    ) == (400, "MetadataTooLarge")
    assert error_of(s3.head_object, Bucket=bucket, Key="k")[0] == 404
