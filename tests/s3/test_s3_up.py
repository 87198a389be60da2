"""``kittenfs up`` serves the S3 API too, on the port it prints."""

import re
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import httpx
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster import running_up

from kittenfs.cluster import free_port_block


def test_up_serves_s3_on_the_port_it_prints(tmp_path: Path) -> None:
    # Two spaces: up's own line, printed once the cluster is up (the master logs its S3 URL
    # too, before any worker has registered).
    with running_up(tmp_path, until="  S3 API at") as up:
        match = re.search(r"^  S3 API at (http://127\.0\.0\.1:\d+)", up.output(), re.MULTILINE)
        assert match, up.output()
        s3 = boto3.client(
            "s3",
            endpoint_url=match.group(1),
            aws_access_key_id="any",  # auth is off: signatures are not checked
            aws_secret_access_key="any",
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket="from-up")
        s3.put_object(Bucket="from-up", Key="a/b.txt", Body=b"over s3")
        native = httpx.get(f"{up.url}/from-up/a/b.txt", follow_redirects=True, timeout=30)
        assert native.content == b"over s3"


def test_up_names_a_taken_s3_port(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "kittenfs",
                "up",
                "--port",
                str(free_port_block(4)),
                "--s3-port",
                str(taken),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert f"port {taken} (the S3 API) is in use" in done.stderr
