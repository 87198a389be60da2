"""ceph/s3-tests against a real kittenFS cluster: the configuration it needs and a runner.

The suite (an unmodified snapshot, ../shared/s3-tests) needs three key pairs ([s3 main],
[s3 alt], [s3 tenant]); they are admin credentials made on a cluster with auth on.  The
selection of its tests that kittenFS answers for is in selection.py, each exclusion with
its reason.  ``python tests/s3/conformance.py`` runs it and prints the counts by area;
``--gateway`` runs it through an S3 gateway, and ``--against seaweedfs`` against SeaweedFS's
S3 gateway (the bench's peer, kittenfs.bench.seaweedfs, with three admin identities), to
compare like with like.
"""

from __future__ import annotations

import argparse
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

from kittenfs.bench import seaweedfs
from kittenfs.bench.load import S3Credential
from kittenfs.s3.sigv4 import authorize

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cluster import Cluster, Proc, started  # noqa: E402
from s3.selection import FILES, SUITE, deselect_args  # noqa: E402

S3_AT = re.compile(r"S3 API at (https?://\S+)")
TOKEN = "s3-tests-admin-token-0123456789"
#: The suite's key pairs ([s3 main], [s3 alt], [s3 tenant]).
USERS = ("main", "alt", "tenant")


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


def write_conf(path: Path, endpoint: str, users: dict[str, tuple[str, S3Credential]]) -> None:
    """Write an s3-tests configuration for the S3 API at ``endpoint``; ``users`` gives each
    of USERS's user ID (also its display name) and key pair."""
    url = httpx.URL(endpoint)
    sections = []
    for name in USERS:
        user, key = users[name]
        sections.append(
            f"[s3 {name}]\ndisplay_name = {user}\nuser_id = {user}\n"
            f"email = {name}@example.com\napi_name = kfs-{name}\n"
            f"access_key = {key.access_key}\nsecret_key = {key.secret}\ntenant = kfs\n"
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
    """Run the selection against ``cluster``'s S3 API (or ``endpoint``) with three fresh
    admin keys, each key's user ID its access key; return pytest's output (see suite)."""
    users = {}
    for name in USERS:
        access, secret = make_key(cluster)
        users[name] = (access, S3Credential(access, secret))
    write_conf(report.with_suffix(".conf"), endpoint or s3_url(cluster), users)
    return suite(report, *extra)


def run_seaweedfs(report: Path, *extra: str) -> str:
    """Run the selection against a SeaweedFS peer's S3 gateway (installed if missing), its
    identities main, alt and tenant (each account's ID its name); return pytest's output."""
    weed, why = seaweedfs.find_weed(install=True)
    if weed is None:
        raise SystemExit(why)
    print(seaweedfs.version(weed), flush=True)
    with seaweedfs.seaweedfs(weed, users=USERS) as peer:
        print("SeaweedFS PIDs:", peer.pids(), flush=True)
        # The peer's readiness check made a bucket; the suite expects none at the start.
        host = httpx.URL(peer.s3_url).netloc.decode()
        key = peer.credential
        signed = authorize("DELETE", "/kfs-ready", host, key.access_key, key.secret)
        httpx.delete(f"{peer.s3_url}/kfs-ready", headers=signed, timeout=30).raise_for_status()
        users = {name: (name, key) for name, key in peer.users.items()}
        write_conf(report.with_suffix(".conf"), peer.s3_url, users)
        return suite(report, *extra)


def suite(report: Path, *extra: str) -> str:
    """Run the selection with the configuration at ``report``.conf; return pytest's output
    (also in ``report``.log).

    The junit XML goes to ``report``; the log is written as the tests run, so a slow test
    can be seen while it runs.
    """
    conf = report.with_suffix(".conf")
    log = report.with_suffix(".log")
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
    """Run the selection and print the counts; other arguments go to pytest."""
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--gateway", action="store_true", help="through a kittenfs s3 gateway")
    parser.add_argument("--against", choices=["kittenfs", "seaweedfs"], default="kittenfs")
    parser.add_argument("--out", type=Path, help="keep the report, log and config here")
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        report = (args.out or root) / "report.xml"
        report.parent.mkdir(parents=True, exist_ok=True)
        print("log:", report.with_suffix(".log"), flush=True)
        if args.against == "seaweedfs":
            print(run_seaweedfs(report, *extra)[-6000:])
        else:
            with started(root / "c", master_args=["--s3-port", "0"], token=TOKEN) as cluster:
                front = gateway(cluster)
                if args.gateway:
                    front.start()
                try:
                    endpoint = front.url if args.gateway else None
                    print(run(cluster, report, *extra, endpoint=endpoint)[-6000:])
                finally:
                    front.stop()
        outcomes = results(report)
    print(json.dumps({a: dict(c) for a, c in sorted(by_area(outcomes).items())}, indent=1))
    print(dict(Counter(outcomes.values())))
    print("not passed:", sorted(n for n, o in outcomes.items() if o != "passed"))


if __name__ == "__main__":
    main()
