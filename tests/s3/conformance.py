"""ceph/s3-tests against a real kittenFS cluster: the configuration it needs and a runner.

The suite (an unmodified snapshot, ../shared/s3-tests) needs three key pairs ([s3 main],
[s3 alt], [s3 tenant]); they are admin credentials made on a cluster with auth on.  The
selection of its tests that kittenFS answers for is in selection.py, each exclusion with
its reason.  ``python tests/s3/conformance.py`` runs it and prints the counts by area.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cluster import Cluster, Proc, started  # noqa: E402
from s3.selection import FILES, SUITE, deselect_args  # noqa: E402

S3_AT = re.compile(r"S3 API at (https?://\S+)")
TOKEN = "s3-tests-admin-token-0123456789"


def s3_url(cluster: Cluster) -> str:
    """Return the URL of the cluster's S3 API (its master was given --s3-port 0)."""
    match = S3_AT.search(cluster.master.log.read_text())
    assert match, "the master did not log its S3 API's URL"
    return match.group(1)


def make_key(cluster: Cluster, role: str = "admin", prefix: str = "/") -> tuple[str, str]:
    """Create a credential; return its access key and secret."""
    made = httpx.post(
        f"{cluster.url}/_keys",
        json={"role": role, "prefix": prefix},
        headers={"Authorization": f"Bearer {cluster.token}"},
        timeout=30,
    )
    made.raise_for_status()
    body = made.json()
    return body["access_key"], body["secret_key"]


def gateway(cluster: Cluster, member: bool = True) -> Proc:
    """Return an S3 gateway (``kittenfs s3``) in front of ``cluster``, not started; it
    keeps signing keys one second, and has the cluster secret if it is a ``member``."""
    secret = ["--cluster-secret-file", str(cluster.root / "cluster.secret")] if member else []
    return Proc(
        "s3",
        ["s3", "--master", cluster.url, "--port", "0", "--key-ttl", "1", *secret],
        cluster.root / "gateway.log",
    )


def write_conf(cluster: Cluster, path: Path, endpoint: str | None = None) -> None:
    """Write an s3-tests configuration for ``cluster``'s S3 API (or ``endpoint``) with
    three fresh key pairs."""
    url = httpx.URL(endpoint or s3_url(cluster))
    sections = []
    for name in ("main", "alt", "tenant"):
        access, secret = make_key(cluster)
        sections.append(
            f"[s3 {name}]\ndisplay_name = {access}\nuser_id = {access}\n"
            f"email = {name}@example.com\napi_name = kfs-{name}\n"
            f"access_key = {access}\nsecret_key = {secret}\ntenant = kfs\n"
        )
    # IAM is not part of the selection, but the suite reads these sections at import.
    for name in ("iam", "iam root", "iam alt root"):
        sections.append(
            f"[{name}]\naccess_key = KFSNOTAKEY{len(name):010d}\nsecret_key = {'x' * 40}\n"
            f"user_id = {name}\nemail = {name.replace(' ', '.')}@example.com\n"
            f"display_name = {name}\n"
        )
    path.write_text(
        f"[DEFAULT]\nhost = {url.host}\nport = {url.port}\nis_secure = False\n"
        "ssl_verify = False\n\n[fixtures]\nbucket prefix = kfs-{random}-\n\n" + "\n".join(sections)
    )


def run(cluster: Cluster, report: Path, *extra: str, endpoint: str | None = None) -> str:
    """Run the selection against ``cluster``; return pytest's output (also in ``report``.log).

    The junit XML goes to ``report``; the log is written as the tests run, so a slow test
    can be seen while it runs.
    """
    conf = report.with_suffix(".conf")
    log = report.with_suffix(".log")
    write_conf(cluster, conf, endpoint)
    with log.open("w") as out:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                *(str(SUITE / "s3tests" / "functional" / name) for name in FILES),
                "-p",
                "no:cacheprovider",
                "-o",
                "addopts=",
                "-v",
                "--timeout=120",
                f"--junitxml={report}",
                *deselect_args(),
                *extra,
            ],
            env={**os.environ, "S3TEST_CONF": str(conf)},
            cwd=SUITE,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
            check=False,
        )
    return log.read_text()


def results(report: Path) -> dict[str, str]:
    """Return each test's outcome (passed, failed, error, skipped) from a junit report."""
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
        outcomes[case.get("name", "")] = {"failure": "failed"}.get(outcome, outcome)
    return outcomes


def by_area(outcomes: dict[str, str]) -> dict[str, Counter[str]]:
    """Return the outcome counts per area (a test name's first word after ``test_``)."""
    areas: dict[str, Counter[str]] = {}
    for name, outcome in outcomes.items():
        area = name.removeprefix("test_").split("_", 1)[0]
        areas.setdefault(area, Counter())[outcome] += 1
    return areas


def main() -> None:
    """Run the selection; ``--gateway`` first: through an S3 gateway (``kittenfs s3``)."""
    through_gateway = sys.argv[1:2] == ["--gateway"]
    extra = sys.argv[2:] if through_gateway else sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("log:", root / "report.log", flush=True)
        with started(root / "c", master_args=["--s3-port", "0"], token=TOKEN) as cluster:
            front = gateway(cluster)
            if through_gateway:
                front.start()
            try:
                endpoint = front.url if through_gateway else None
                print(run(cluster, root / "report.xml", *extra, endpoint=endpoint)[-6000:])
            finally:
                front.stop()
            outcomes = results(root / "report.xml")
    print(json.dumps({a: dict(c) for a, c in sorted(by_area(outcomes).items())}, indent=1))
    print(dict(Counter(outcomes.values())))
    print("not passed:", sorted(n for n, o in outcomes.items() if o != "passed"))


if __name__ == "__main__":
    main()
