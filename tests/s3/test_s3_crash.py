"""A crash between a Complete's two steps (the object's manifest is written, the upload's
record not yet deleted) leaves the record of an upload that is complete.  Whatever ends
that record later (a retried Complete, the abandoned-upload cleaner) must keep the parts
the object's manifest names: the object stays whole.

The crash's outcome is made exactly, not hoped for: the upload's index record is saved
while the master is stopped and written back after the Complete.
"""

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster import Cluster, started
from s3.conformance import TOKEN, make_key
from s3.test_s3_api import MiB, client_for

from kittenfs.cluster import free_port_block
from kittenfs.master.index import Index, Space, open_index
from kittenfs.records import IndexRecord


def _with_index(cluster: Cluster, use: Callable[[Index], Awaitable[object]]) -> object:
    """Run ``use`` on the master's index while the master is stopped; start it again."""
    cluster.master.stop()
    try:

        async def run() -> object:
            index = await open_index(cluster.index, cluster.root / "master")
            try:
                return await use(index)
            finally:
                await index.close()

        return asyncio.run(run())
    finally:
        cluster.master.start()


def test_a_leftover_upload_record_never_costs_the_completed_object(tmp_path: Path) -> None:
    args = ["--s3-port", str(free_port_block(1)), "--s3-abandoned-after", "3"]
    with started(tmp_path, master_args=args, token=TOKEN) as cluster:
        s3 = client_for(cluster, *make_key(cluster))
        s3.create_bucket(Bucket="crash")
        first, last = os.urandom(5 * MiB), os.urandom(1000)
        upload = s3.create_multipart_upload(Bucket="crash", Key="obj")["UploadId"]
        parts = [
            {
                "PartNumber": n,
                "ETag": s3.upload_part(
                    Bucket="crash", Key="obj", UploadId=upload, PartNumber=n, Body=body
                )["ETag"],
            }
            for n, body in ((1, first), (2, last))
        ]
        upload_key = f"/_s3/uploads/crash/{upload}"

        async def save(index: Index) -> IndexRecord | None:
            return await index.get(Space.LIVE, upload_key)

        leftover = _with_index(cluster, save)
        assert isinstance(leftover, IndexRecord)
        done = s3.complete_multipart_upload(
            Bucket="crash", Key="obj", UploadId=upload, MultipartUpload={"Parts": parts}
        )

        async def restore(index: Index) -> None:  # written back, as a write would
            await index.begin_write(leftover)
            await index.commit_write(leftover, [])

        _with_index(cluster, restore)  # the crash's outcome: both the object and the upload
        s3 = client_for(cluster, *make_key(cluster))
        again = s3.complete_multipart_upload(
            Bucket="crash", Key="obj", UploadId=upload, MultipartUpload={"Parts": parts}
        )
        assert again["ETag"] == done["ETag"]
        _with_index(cluster, restore)  # and once more, for the cleaner to find
        s3 = client_for(cluster, *make_key(cluster))
        deadline = time.monotonic() + 90
        while s3.list_multipart_uploads(Bucket="crash").get("Uploads"):
            assert time.monotonic() < deadline, "the cleaner never ended the leftover upload"
            time.sleep(0.2)
        assert s3.get_object(Bucket="crash", Key="obj")["Body"].read() == first + last


pytestmark = pytest.mark.timeout(300)
