"""Rebuild keeps S3 metadata: objects stored through boto3, their copies moved by a drain,
then the master's index lost and rebuilt from the workers, read back whole through boto3
(metadata, checksums, ETags, and a multipart object's bytes, not its manifest)."""

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from cluster import Cluster, MakeCluster
from jobs import preferred
from test_drain import drain
from test_rebuild import live_records, new_target, rebuild, start_on

MiB = 1024 * 1024
S3_AT = re.compile(r"S3 API at (https?://\S+)")
BUCKET = "photos"


def s3_client(cluster: Cluster) -> BaseClient:
    """Return a boto3 client of the S3 API the master serves now (the last it logged: each
    start takes a new port).  Auth is off, so any key signs."""
    url = S3_AT.findall(cluster.master.log.read_text())[-1]
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="any",
        aws_secret_access_key="any",
        region_name="us-east-1",
        config=Config(
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
            signature_version="s3v4",
        ),
    )


def store_objects(s3: BaseClient) -> dict[str, bytes]:
    """Store an inline object, a file-backed one, a copy with replaced metadata and a
    multipart one, each with metadata; return their bytes by name."""
    small, large = b"a small cat\n" * 10, os.urandom(300_000)
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB + 17), os.urandom(1234)]
    s3.put_object(
        Bucket=BUCKET,
        Key="small.txt",
        Body=small,
        ContentType="text/plain; charset=utf-8",
        Metadata={"colour": "ginger", "name": "tom"},
        ChecksumAlgorithm="SHA256",
    )
    s3.put_object(
        Bucket=BUCKET,
        Key="dir/large.jpg",
        Body=large,
        ContentType="image/jpeg",
        ContentDisposition='attachment; filename="cat.jpg"',
        CacheControl="max-age=60",
        Metadata={"camera": "pinhole"},
        ChecksumAlgorithm="CRC32",
    )
    s3.copy_object(
        Bucket=BUCKET,
        Key="copy.jpg",
        CopySource={"Bucket": BUCKET, "Key": "dir/large.jpg"},
        MetadataDirective="REPLACE",
        ContentType="image/png",
        Metadata={"copied": "yes"},
    )
    upload = s3.create_multipart_upload(
        Bucket=BUCKET,
        Key="archive.tar",
        ContentType="application/x-tar",
        Metadata={"kind": "archive"},
    )["UploadId"]
    done = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket=BUCKET, Key="archive.tar", UploadId=upload, PartNumber=n, Body=part
            )["ETag"],
        }
        for n, part in enumerate(parts, 1)
    ]
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key="archive.tar", UploadId=upload, MultipartUpload={"Parts": done}
    )
    return {
        "small.txt": small,
        "dir/large.jpg": large,
        "copy.jpg": large,
        "archive.tar": b"".join(parts),
    }


def described(s3: BaseClient, name: str) -> dict[str, Any]:
    """Return what S3 says of an object beside its bytes."""
    head = s3.head_object(Bucket=BUCKET, Key=name, ChecksumMode="ENABLED")
    fields = ("ETag", "ContentType", "ContentLength", "Metadata", "ContentDisposition")
    kept = {field: head.get(field) for field in (*fields, "CacheControl")}
    kept.update((k, v) for k, v in head.items() if k.startswith("Checksum"))
    return kept


def test_rebuild_restores_s3_metadata_of_moved_copies(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    cluster = make_cluster(workers=4, master_args=["--s3-port", "0", "--replaced-grace", "0"])
    s3 = s3_client(cluster)
    s3.create_bucket(Bucket=BUCKET)
    objects = store_objects(s3)
    before = {name: described(s3, name) for name in objects}
    assert before["small.txt"]["Metadata"] == {"colour": "ginger", "name": "tom"}
    assert before["small.txt"]["ChecksumSHA256"]
    assert before["dir/large.jpg"]["ChecksumCRC32"]
    assert before["archive.tar"]["ETag"].endswith('-3"')

    # A worker holding copies of an inline object, a file-backed one and the multipart
    # object's manifest is drained: each of its copies moves to the worker that lacked one.
    # It then goes, so the rebuild below sees every moved copy and none of its own.
    keys = ["/photos/small.txt", "/photos/dir/large.jpg", "/photos/archive.tar"]
    gone = min(set.intersection(*(preferred(cluster, key) for key in keys)))
    stay = [node for i, node in enumerate(cluster.nodes) if i != gone]
    held = {node.url: {b["blob"] for b in cluster.worker_blobs(node)} for node in stay}
    job = drain(cluster, gone)
    assert job["state"] == "done" and not job["errors"], job
    cluster.nodes[gone].stop()
    moved = [
        b for node in stay for b in cluster.worker_blobs(node) if b["blob"] not in held[node.url]
    ]
    assert set(keys) <= {b["key"] for b in moved}, moved

    cluster.master.stop()
    original = live_records(cluster.index, cluster.root / "master")
    assert original["/photos/archive.tar"].meta  # the manifest marker, ETag and metadata
    for blob in moved:  # each moved copy carries its record's metadata
        record = original[blob["key"]]
        assert blob["version"] == record.version
        assert [tuple(pair) for pair in blob.get("meta", [])] == list(record.meta), blob
    target = new_target(cluster, tmp_path / "rebuilt")
    done = rebuild(cluster, target, stay)
    assert done.returncode == 0, done.stderr
    rebuilt = live_records(target.index, target.data)
    assert rebuilt.keys() == original.keys()
    for key, record in original.items():
        assert (rebuilt[key].version, rebuilt[key].md5, rebuilt[key].meta) == (
            record.version,
            record.md5,
            record.meta,
        ), key

    start_on(cluster, target)  # the master's disk is lost
    cluster.wait_workers_up(3)
    s3 = s3_client(cluster)
    # The bucket is a key too (/_s3/buckets/<name>), rebuilt with the others.
    assert BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    for name, value in objects.items():
        assert described(s3, name) == before[name], name
        got = s3.get_object(Bucket=BUCKET, Key=name)
        body = got["Body"].read()
        assert hashlib.md5(body).digest() == hashlib.md5(value).digest(), name
        assert got["ETag"] == before[name]["ETag"]
    second = s3.get_object(Bucket=BUCKET, Key="archive.tar", PartNumber=2)["Body"].read()
    assert second == objects["archive.tar"][5 * MiB : 10 * MiB + 17]
