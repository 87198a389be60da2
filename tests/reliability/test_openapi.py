"""The shipped OpenAPI description, and schemathesis run from it against a real master:
every operation is called with generated valid and invalid input.  No 5xx, every status and
content type as documented, every JSON body matching its schema, and nothing stored before
the run is changed by it."""

import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import httpx
import pytest
from cluster import Cluster

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


def test_the_master_serves_the_packaged_description(shared: Cluster) -> None:
    served = httpx.get(f"{shared.url}/_openapi.yaml", timeout=5)
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/yaml")
    assert served.content == resources.files("kittenfs").joinpath("openapi.yaml").read_bytes()


def test_schemathesis_finds_nothing_and_changes_no_stored_value(
    shared: Cluster, tmp_path: Path
) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.fail("schemathesis is not installed: ./scripts/setup installs the test extras")
    stored = {f"/openapi-keep/{i}": bytes([i]) * (i * 9000) for i in range(1, 9)}
    with httpx.Client(base_url=shared.url, timeout=30, follow_redirects=True) as http:
        for key, value in stored.items():
            assert http.put(key, content=value).status_code in (201, 204)
        done = subprocess.run(
            [
                st,
                "run",
                f"{shared.url}/_openapi.yaml",
                "--checks",
                CHECKS,
                "--exclude-path",
                "/clear",
                "--max-examples",
                "40",
                "--seed",
                "2",
                "--request-timeout",
                "30",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        for key, value in stored.items():
            got = http.get(key, params={"direct": ""})
            assert got.status_code == 200 and got.content == value, key
