"""The kittenfs:// filesystem's pure part: how a URL and the settings name a master and a key
(no request is made: the client connects on first use)."""

from pathlib import Path
from typing import Any

import pytest

from kittenfs.filesystem import KittenFileSystem


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KITTENFS_URL", "KITTENFS_TOKEN", "KITTENFS_CA", "KITTENFS_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def made(**options: Any) -> KittenFileSystem:
    return KittenFileSystem(skip_instance_cache=True, **options)


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("kittenfs://h:3000/data/x.parquet", "/data/x.parquet"),
        ("kittenfs:///data/x", "/data/x"),
        ("kittenfs://h:3000", "/"),
        ("kittenfs://h:3000/data/", "/data"),
        ("data/x", "/data/x"),
        ("/", "/"),
    ],
)
def test_a_url_names_a_key(given: str, key: str) -> None:
    assert KittenFileSystem._strip_protocol(given) == key


def test_the_url_host_is_the_master() -> None:
    assert KittenFileSystem._get_kwargs_from_urls("kittenfs://h:3000/x") == {"host": "h:3000"}
    assert KittenFileSystem._get_kwargs_from_urls("kittenfs:///x") == {}
    assert made(host="h:3000").url == "http://h:3000"
    assert made(host="h:3000").unstrip_protocol("/a/b") == "kittenfs://h:3000/a/b"


def test_the_configured_url_serves_when_the_url_has_no_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert made().url == "http://127.0.0.1:3000"
    monkeypatch.setenv("KITTENFS_URL", "https://m:4000")
    assert made().url == "https://m:4000"
    assert made(host="m:4000").url == "https://m:4000"  # the same master: its scheme
    assert made(host="other:4000").url == "http://other:4000"
    assert made(host="other:4000", scheme="https").url == "https://other:4000"
    assert made(url="http://x:1,http://y:2").url == "http://x:1,http://y:2"


def test_the_token_comes_from_options_then_environment_then_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def sent(fs: KittenFileSystem) -> str | None:
        header: str | None = fs.client.http.headers.get("authorization")
        return header

    config = tmp_path / "kittenfs.toml"
    config.write_text('[client]\ntoken = "from-file"\nurl = "http://f:5000"\n')
    assert sent(made()) is None
    assert sent(made(config=str(config))) == "Bearer from-file"
    assert made(config=str(config)).url == "http://f:5000"
    monkeypatch.setenv("KITTENFS_CONFIG", str(config))
    assert sent(made()) == "Bearer from-file"
    monkeypatch.setenv("KITTENFS_TOKEN", "from-env")
    assert sent(made()) == "Bearer from-env"
    assert sent(made(token="given")) == "Bearer given"


def test_a_token_from_the_settings_goes_only_to_the_masters_they_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def sent(fs: KittenFileSystem) -> str | None:
        header: str | None = fs.client.http.headers.get("authorization")
        return header

    monkeypatch.setenv("KITTENFS_URL", "https://m:4000")
    monkeypatch.setenv("KITTENFS_TOKEN", "secret")
    assert sent(made()) == "Bearer secret"  # kittenfs:///key: the configured master
    assert sent(made(host="m:4000")) == "Bearer secret"
    assert sent(made(host="elsewhere:80")) is None  # a URL from data: no credential
    assert sent(made(host="elsewhere:80", token="given")) == "Bearer given"
    assert sent(made(url="http://chosen:1")) == "Bearer secret"  # a master the caller named


@pytest.mark.parametrize(
    ("given", "key"),
    [("kittenfs://h:3000/a#1.parquet", "/a#1.parquet"), ("kittenfs://h:3000/q?x=1", "/q?x=1")],
)
def test_a_key_keeps_its_hash_and_question_mark(given: str, key: str) -> None:
    assert KittenFileSystem._strip_protocol(given) == key
    assert KittenFileSystem._get_kwargs_from_urls(given) == {"host": "h:3000"}
