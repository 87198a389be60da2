"""Clients' credentials (issue 9): roles, prefixes, expiry, revocation, anonymous access,
signed links, protected mode, and the CLI and Python client that carry them.  A real
master with an admin token and real workers; every request over HTTP."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster import Cluster, MakeCluster, running_up, started

import kittenfs
from kittenfs import AccessDenied

ADMIN = "admin-" + os.urandom(12).hex()


def kfs(
    *args: str, token: str | None = None, url: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the kittenfs command line (with ``--url``/``--token`` when given)."""
    flags = [*(["--url", url] if url else []), *(["--token", token] if token else [])]
    return subprocess.run(
        [sys.executable, "-m", "kittenfs", *args, *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster per module with auth on (an admin token), three workers."""
    with started(tmp_path_factory.mktemp("auth"), token=ADMIN) as cluster:
        yield cluster


def create(cluster: Cluster, role: str, *extra: str) -> dict[str, Any]:
    made = kfs("key", "create", "--role", role, *extra, "--json", url=cluster.url, token=ADMIN)
    assert made.returncode == 0, made.stderr
    created: dict[str, Any] = json.loads(made.stdout)
    return created


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_denied(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/any/key"),
        ("PUT", "/any/key"),
        ("DELETE", "/any/key"),
        ("GET", "/?list"),
        ("GET", "/_cluster"),
        ("GET", "/metrics"),
        ("POST", "/_jobs/repair"),
        ("GET", "/_keys"),
        ("DELETE", "/clear?confirm=yes"),
        ("GET", "/get/any/key"),
        ("PUT", "/put/any/key"),
    ],
)
def test_requests_without_credentials_get_401(secured: Cluster, method: str, path: str) -> None:
    assert_denied(httpx.request(method, f"{secured.url}{path}", content=b"x"), 401)


def test_health_and_the_api_description_stay_open(secured: Cluster) -> None:
    assert httpx.get(f"{secured.url}/health").status_code == 200
    assert httpx.get(f"{secured.url}/_openapi.yaml").status_code == 200


@pytest.mark.parametrize(
    "token",
    ["nonsense", "kfs.KFSAAAAAAAAAAAAAAAAA." + "a" * 40, ADMIN + "x", "Basic"],
    ids=["garbage", "unknown-credential", "admin-token-altered", "basic"],
)
def test_bad_tokens_get_401_and_change_nothing(secured: Cluster, token: str) -> None:
    header = "Basic Zm9vOmJhcg==" if token == "Basic" else f"Bearer {token}"
    answer = httpx.put(f"{secured.url}/bad/token", content=b"no", headers={"Authorization": header})
    assert_denied(answer, 401)
    assert httpx.head(f"{secured.url}/bad/token", headers=bearer(ADMIN)).status_code == 404


def test_a_write_credential_is_confined_to_its_prefix(secured: Cluster) -> None:
    made = create(secured, "write", "--prefix", "/photos/", "--expires", "30d")
    assert {"access_key", "secret_key", "token"} <= made.keys()
    assert made["role"] == "write" and made["prefix"] == "/photos/" and made["expires_ms"]
    token = made["token"]
    with httpx.Client(
        base_url=secured.url, timeout=30, headers=bearer(token), follow_redirects=True
    ) as http:
        assert http.put("/photos/cat", content=b"meow").status_code == 201
        assert http.get("/photos/cat").content == b"meow"
        assert http.request("UNLINK", "/photos/cat").status_code == 204
        assert http.put("/photos/cat", content=b"meow").status_code == 201
        assert http.put("/put/photos/form", data={"value": "v"}).status_code == 201
        assert_denied(http.put("/videos/dog", content=b"woof"), 403)
        assert_denied(http.get("/videos/dog"), 403)
        assert_denied(http.post("/_jobs/repair"), 403)
        assert_denied(http.get("/_keys"), 403)
        assert_denied(http.get("/_cluster"), 403)  # cluster-wide: read on every key
        httpx.put(f"{secured.url}/videos/dog", content=b"woof", headers=bearer(ADMIN))
        listed = http.get("/", params={"list": ""}).json()["keys"]
        assert listed and all(key.startswith("/photos/") for key in listed), listed
        assert http.get("/pho", params={"list": ""}).json()["keys"] == listed
        assert_denied(http.get("/videos/", params={"list": ""}), 403)
        assert http.delete("/photos/cat").status_code == 204


def test_a_read_credential_reads_and_nothing_more(secured: Cluster) -> None:
    httpx.put(f"{secured.url}/shared/doc", content=b"text", headers=bearer(ADMIN))
    token = create(secured, "read")["token"]
    with kittenfs.Client(secured.url, token=token) as client:
        assert client.get("/shared/doc") == b"text"
        assert client.head("/shared/doc").size == 4
        assert "/shared/doc" in list(client.list("/shared/"))
        with pytest.raises(AccessDenied) as denied:
            client.put("/shared/doc", b"changed")
        assert denied.value.status == 403
        with pytest.raises(AccessDenied):
            client.delete("/shared/doc")
        assert client.cluster()["workers"]  # read on every key: the cluster's state too
    assert (
        httpx.get(f"{secured.url}/shared/doc", follow_redirects=True, headers=bearer(ADMIN)).content
        == b"text"
    )


def test_curl_follows_the_redirect_with_a_token_on_the_master(secured: Cluster) -> None:
    """curl sends the token to the master only (not across the redirect); the worker takes
    the link the master signed."""
    value = os.urandom(200_000)
    httpx.put(f"{secured.url}/curl/v", content=value, headers=bearer(ADMIN))
    token = create(secured, "read")["token"]
    got = subprocess.run(
        [
            "curl",
            "-sS",
            "-f",
            "-L",
            "-H",
            f"Authorization: Bearer {token}",
            f"{secured.url}/curl/v",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert got.returncode == 0 and got.stdout == value, got.stderr
    denied = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-L", f"{secured.url}/curl/v"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert denied.stdout == "401"


def test_credentials_expire(secured: Cluster) -> None:
    made = kfs(
        "key", "create", "--role", "read", "--expires", "2s", "--json", url=secured.url, token=ADMIN
    )
    token = json.loads(made.stdout)["token"]
    httpx.put(f"{secured.url}/soon/gone", content=b"x", headers=bearer(ADMIN))
    assert httpx.head(f"{secured.url}/soon/gone", headers=bearer(token)).status_code == 200
    deadline = time.monotonic() + 30
    while httpx.head(f"{secured.url}/soon/gone", headers=bearer(token)).status_code == 200:
        assert time.monotonic() < deadline, "the credential never expired"
        time.sleep(0.2)
    assert_denied(httpx.get(f"{secured.url}/soon/gone", headers=bearer(token)), 401)


def test_a_revoked_credential_is_refused_at_once(secured: Cluster) -> None:
    made = create(secured, "write")
    listed = kfs("key", "list", "--json", url=secured.url, token=ADMIN)
    keys = json.loads(listed.stdout)
    mine = next(k for k in keys if k["access_key"] == made["access_key"])
    assert "secret_key" not in mine and "token" not in mine
    assert made["secret_key"] not in listed.stdout
    assert (
        httpx.put(f"{secured.url}/rev/k", content=b"1", headers=bearer(made["token"])).status_code
        == 201
    )
    revoked = kfs("key", "revoke", made["access_key"], url=secured.url, token=ADMIN)
    assert revoked.returncode == 0, revoked.stderr
    assert_denied(
        httpx.put(f"{secured.url}/rev/k", content=b"2", headers=bearer(made["token"])), 401
    )
    assert (
        kfs("key", "revoke", made["access_key"], url=secured.url, token=ADMIN).returncode == 1
    )  # gone already
    assert (
        httpx.get(f"{secured.url}/rev/k", follow_redirects=True, headers=bearer(ADMIN)).content
        == b"1"
    )


def test_only_an_admin_manages_credentials(secured: Cluster) -> None:
    writer = create(secured, "write")["token"]
    assert_denied(
        httpx.post(f"{secured.url}/_keys", json={"role": "admin"}, headers=bearer(writer)), 403
    )
    denied = kfs("key", "create", "--role", "admin", url=secured.url, token=writer)
    assert denied.returncode == 1 and "403" in denied.stderr


@pytest.mark.parametrize(
    "body",
    [
        {"role": "root"},
        {"role": "read", "prefix": "photos"},
        {"role": "read", "expires_s": -5},
        {"role": "read", "expires_s": float("nan")},
        {"role": "read", "shoe_size": 9},
    ],
)
def test_bad_credential_requests_are_400(secured: Cluster, body: dict[str, object]) -> None:
    answer = httpx.post(
        f"{secured.url}/_keys", content=json.dumps(body).encode(), headers=bearer(ADMIN)
    )
    assert answer.status_code == 400, answer.text


def test_the_cli_and_client_take_the_token_from_the_environment(secured: Cluster) -> None:
    token = create(secured, "write")["token"]
    environment = {"KITTENFS_TOKEN": token, "KITTENFS_URL": secured.url}
    put = subprocess.run(
        [sys.executable, "-m", "kittenfs", "put", "/env/k", "-"],
        input=b"v",
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, **environment},
    )
    assert put.returncode == 0, put.stderr
    got = kfs("get", "/env/k", env=environment)
    assert got.returncode == 0 and got.stdout == "v"
    os.environ["KITTENFS_TOKEN"] = token
    try:
        with kittenfs.Client(secured.url) as client:
            assert client.get("/env/k") == b"v"
    finally:
        del os.environ["KITTENFS_TOKEN"]
    denied = kfs("get", "/env/k", url=secured.url)
    assert denied.returncode == 1 and "401" in denied.stderr


def test_signed_links_work_for_anyone_until_they_expire_or_are_altered(secured: Cluster) -> None:
    writer = create(secured, "write", "--prefix", "/share/")
    httpx.put(f"{secured.url}/share/pic", content=b"picture", headers=bearer(writer["token"]))
    signed = kfs("sign", "/share/pic", "--expires", "1h", url=secured.url, token=writer["token"])
    assert signed.returncode == 0, signed.stderr
    url = signed.stdout.strip()
    assert url.startswith(secured.url + "/share/pic?")
    got = httpx.get(url, follow_redirects=True)  # no credential: the link is enough
    assert got.status_code == 200 and got.content == b"picture"
    assert httpx.head(url).status_code == 200
    assert httpx.put(url, content=b"overwrite").status_code == 403  # a GET link
    assert httpx.get(url.replace("/share/pic", "/share/other")).status_code == 403
    assert httpx.get(url.replace("kfs-expires=", "kfs-expires=9")).status_code == 403
    assert httpx.get(url + "&list").status_code == 401  # a link grants no listing
    short = kfs(
        "sign", "/share/pic", "--expires", "1s", url=secured.url, token=writer["token"]
    ).stdout.strip()
    deadline = time.monotonic() + 30
    while httpx.get(short).status_code != 403:
        assert time.monotonic() < deadline, "the link never expired"
        time.sleep(0.2)
    assert httpx.get(short).json()["error"] == "link_expired"
    upload = kfs(
        "sign", "/share/upload", "--method", "PUT", url=secured.url, token=writer["token"]
    ).stdout.strip()
    assert httpx.put(upload, content=b"from a browser").status_code == 201
    assert (
        httpx.get(
            url.replace("/share/pic", "/share/upload").split("?")[0],
            headers=bearer(ADMIN),
            follow_redirects=True,
        ).content
        == b"from a browser"
    )
    kfs("key", "revoke", writer["access_key"], url=secured.url, token=ADMIN)
    assert httpx.get(url).status_code == 403  # dies with its credential


def test_a_link_never_grants_more_than_its_signer_has(secured: Cluster) -> None:
    reader = create(secured, "read", "--prefix", "/only/")["token"]
    for key, method in (("/only/x", "PUT"), ("/elsewhere", "GET")):
        answer = httpx.post(
            f"{secured.url}/_sign", json={"key": key, "method": method}, headers=bearer(reader)
        )
        assert_denied(answer, 403)
    too_long = httpx.post(
        f"{secured.url}/_sign",
        headers=bearer(reader),
        json={"key": "/only/x", "expires_s": 30 * 86400},
    )
    assert too_long.status_code == 400


def test_anonymous_read_lets_anyone_read_but_not_write(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(token=ADMIN, master_args=["--anonymous", "read"])
    httpx.put(f"{cluster.url}/public/page", content=b"hello", headers=bearer(ADMIN))
    assert httpx.get(f"{cluster.url}/public/page", follow_redirects=True).content == b"hello"
    assert_denied(httpx.put(f"{cluster.url}/public/page", content=b"defaced"), 401)
    assert_denied(httpx.post(f"{cluster.url}/_jobs/gc"), 401)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["master", "--host", "0.0.0.0", "--port", "0"], "cluster a secret"),
        (
            ["worker", "--host", "0.0.0.0", "--port", "0", "--master", "http://127.0.0.1:1"],
            "cluster a secret",
        ),
        (
            ["master", "--host", "0.0.0.0", "--port", "0", "--cluster-secret-file", "SECRET"],
            "auth is off",
        ),
    ],
)
def test_protected_mode_refuses_to_start_off_loopback_without_protection(
    tmp_path: Path, args: list[str], says: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 32)
    args = [str(secret) if a == "SECRET" else a for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "kittenfs", *args, "--data", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and len(done.stderr.strip().splitlines()[-1]) > 40
    assert not (tmp_path / "d").exists()  # refused before touching anything


def test_off_loopback_a_master_with_auth_and_a_secret_starts(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 32)
    from cluster import Proc

    master = Proc(
        "master",
        [
            "master",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--data",
            str(tmp_path / "m"),
            "--cluster-secret-file",
            str(secret),
            "--anonymous",
            "none",
        ],
        tmp_path / "m.log",
    )
    try:
        master.start()
        assert httpx.get(f"{master.url}/health").status_code == 200
        assert httpx.get(f"{master.url}/k").status_code == 401
    finally:
        master.stop()


def test_kittenfs_up_says_auth_is_off_and_how_to_turn_it_on(tmp_path: Path) -> None:
    with running_up(tmp_path, until="auth is") as up:
        assert "kittenfs up --auth" in up.output()
        assert httpx.put(f"{up.url}/tour", content=b"hi").status_code == 201


def test_kittenfs_up_auth_makes_and_prints_an_admin_token(tmp_path: Path) -> None:
    with running_up(tmp_path, "--auth", until="auth is") as up:
        token_file = tmp_path / "data" / "admin.token"
        token = token_file.read_text().strip()
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert token in up.output()
        assert_denied(httpx.put(f"{up.url}/k", content=b"v"), 401)
        assert httpx.put(f"{up.url}/k", content=b"v", headers=bearer(token)).status_code == 201
        with kittenfs.Client(up.url, token=token) as client:
            assert client.get("/k") == b"v"


def test_open_routes_do_not_look_at_credentials(secured: Cluster) -> None:
    for headers, params in (
        ({"Authorization": "Basic Zm9vOmJhcg=="}, {}),
        ({}, {"kfs-signature": "x"}),
        ({"X-Kfs-Cluster": "1.abc"}, {}),
    ):
        assert httpx.get(f"{secured.url}/health", headers=headers, params=params).status_code == 200
        assert (
            httpx.get(f"{secured.url}/_openapi.yaml", headers=headers, params=params).status_code
            == 200
        )


@pytest.mark.parametrize(
    "request_args",
    [
        {"method": "GET", "path": "/_cluster", "headers": {"X-Kfs-Cluster": "9" * 5000 + ".abc"}},
        {"method": "POST", "path": "/_sign", "json": {"key": "/k", "expires_s": 10**400}},
        {"method": "POST", "path": "/_keys", "json": {"role": "read", "expires_s": 10**400}},
        {"method": "POST", "path": "/_jobs/gc", "json": {"grace": 10**400}},
        {"method": "GET", "path": "/?list&limit=" + "9" * 5000},
        {"method": "POST", "path": "/_workers/" + "9" * 5000 + "/drain"},
    ],
)
def test_huge_numbers_get_a_4xx_not_a_500(secured: Cluster, request_args: dict[str, Any]) -> None:
    args = dict(request_args)
    headers = args.pop("headers", None) or bearer(ADMIN)  # a cluster header goes alone
    answer = httpx.request(
        args.pop("method"), f"{secured.url}{args.pop('path')}", headers=headers, **args
    )
    assert 400 <= answer.status_code < 500, answer.text
    assert "Traceback" not in (secured.root / "master.log").read_text()


@pytest.mark.parametrize("expires", [0, False, -1, "soon"])
def test_a_credential_cannot_be_made_to_never_expire_by_accident(
    secured: Cluster, expires: object
) -> None:
    answer = httpx.post(
        f"{secured.url}/_keys", json={"role": "read", "expires_s": expires}, headers=bearer(ADMIN)
    )
    assert answer.status_code == 400, answer.text


def test_signing_reads_no_body_before_it_knows_the_caller(secured: Cluster) -> None:
    answer = httpx.post(f"{secured.url}/_sign", content=b"{" * 1000)
    assert answer.status_code == 401  # not 400 bad_json: the body was not parsed


def test_links_name_the_admin_token_by_a_keyed_id_not_its_hash(secured: Cluster) -> None:
    import hashlib
    from urllib.parse import parse_qs, urlsplit

    httpx.put(f"{secured.url}/admin/link", content=b"x", headers=bearer(ADMIN))
    url = httpx.post(
        f"{secured.url}/_sign", json={"key": "/admin/link"}, headers=bearer(ADMIN)
    ).json()["url"]
    named = parse_qs(urlsplit(url).query)["kfs-credential"][0]
    assert named.startswith("admin:")
    assert named.removeprefix("admin:") not in hashlib.sha256(ADMIN.encode()).hexdigest()
    assert httpx.get(url, follow_redirects=True).content == b"x"


def test_links_point_at_the_master_not_at_the_requests_host_header(secured: Cluster) -> None:
    """A client's Host header never goes into a signed link (an open redirect from a worker's
    URL once it did); links point at the master's own URL (--advertise)."""
    from urllib.parse import parse_qs, urlsplit

    httpx.put(f"{secured.url}/host/k", content=os.urandom(100_000), headers=bearer(ADMIN))
    redirect = httpx.get(f"{secured.url}/host/k", headers={**bearer(ADMIN), "Host": "evil.example"})
    fallback = parse_qs(urlsplit(redirect.headers["location"]).query)["kfs-fallback"][0]
    assert fallback.startswith(secured.url + "/host/k?")
    signed = httpx.post(
        f"{secured.url}/_sign",
        json={"key": "/host/k"},
        headers={**bearer(ADMIN), "Host": "evil.example"},
    ).json()["url"]
    assert signed.startswith(secured.url + "/host/k?")
