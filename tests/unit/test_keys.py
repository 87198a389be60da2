"""Keys: how a raw request path becomes a key."""

import pytest

from kittenfs.keys import (
    MAX_KEY_BYTES,
    InvalidKey,
    decode_key,
    encode_key,
    is_reserved,
    key_from_raw_path,
    key_path,
)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("/", "/"),
        ("/cats/tom.jpg", "/cats/tom.jpg"),
        ("/a%20b", "/a b"),
        ("/a+b", "/a+b"),  # a path is not a form: "+" stays "+"
        ("/a%2Fb", "/a/b"),  # an encoded slash is just a slash
        ("/a%2fb", "/a/b"),  # lower-case hex
        ("/100%25", "/100%"),
        ("/a%3Fb", "/a?b"),  # an encoded "?" is part of the key
        ("/a%23b", "/a#b"),
        ("/caf%C3%A9", "/café"),  # two-byte UTF-8
        ("/%E7%8C%AB", "/猫"),  # three-byte UTF-8
        ("/%F0%9F%90%B1", "/🐱"),  # four-byte UTF-8
        ("/café", "/café"),  # already-decoded text is kept
        ("/a%", "/a%"),  # a lone "%" is not an escape
        ("/a%zz", "/a%zz"),
        ("//double//slash/", "//double//slash/"),
        ("/./..", "/./.."),  # no path normalisation: the key is the path as sent
    ],
)
def test_decoding(raw: str, key: str) -> None:
    assert key_from_raw_path(raw) == key


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("/a?b=c", "/a"),
        ("/a?", "/a"),
        ("/a?b?c", "/a"),
        ("/a%20b?x=%FF", "/a b"),  # the query is dropped before decoding
        ("/?q", "/"),
    ],
)
def test_query_is_stripped(raw: str, key: str) -> None:
    assert key_from_raw_path(raw) == key


def test_exactly_max_bytes_is_accepted() -> None:
    assert MAX_KEY_BYTES == 1024
    key = "/" + "a" * 1023
    assert key_from_raw_path(key) == key
    # Counted after decoding: a long encoded path can still name a short enough key.
    assert key_from_raw_path("/" + "%61" * 1023) == key
    # Counted in UTF-8 bytes: 1 + 341 * 3 = 1024.
    cats = "/" + "猫" * 341
    assert len(cats.encode()) == 1024
    assert key_from_raw_path(cats) == cats


@pytest.mark.parametrize(
    "raw",
    [
        "/" + "a" * 1024,
        "/" + "%61" * 1024,
        "/" + "é" * 512,  # 513 characters but 1025 bytes
        "/" + "a" * 5000,
    ],
)
def test_too_long_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidKey, match="1024"):
        key_from_raw_path(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "/%FF",
        "/a%C3",  # truncated two-byte sequence
        "/%C3%28",  # bad continuation byte
        "/%ED%A0%80",  # UTF-16 surrogate
        "/%C0%AF",  # overlong "/"
        "/%F4%90%80%80",  # beyond U+10FFFF
    ],
)
def test_invalid_utf8_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidKey, match="UTF-8"):
        key_from_raw_path(raw)


@pytest.mark.parametrize("raw", ["/a%00b", "/%00", "/a\x00"])
def test_nul_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidKey, match="NUL"):
        key_from_raw_path(raw)


@pytest.mark.parametrize("raw", ["", "a", "cats/tom.jpg", "?/a", " /a", "%20/a"])
def test_must_start_with_slash(raw: str) -> None:
    with pytest.raises(InvalidKey, match="start with"):
        key_from_raw_path(raw)


def test_leading_slash_is_checked_after_decoding() -> None:
    assert key_from_raw_path("%2Fa") == "/a"


def test_invalid_key_is_a_value_error() -> None:
    assert issubclass(InvalidKey, ValueError)


def test_decode_key_and_encode_key_are_inverse() -> None:
    for key in ["/", "/café", "/🐱/猫", "/" + "a" * 1023]:
        assert decode_key(encode_key(key)) == key
        assert encode_key(key) == key.encode("utf-8")


def test_encode_key_orders_by_utf8_bytes() -> None:
    keys = ["/z", "/é", "/a", "/🐱", "/\uffff", "/猫"]
    by_bytes = sorted(keys, key=encode_key)
    # UTF-8 byte order equals code point order, including astral characters after U+FFFF
    # (unlike UTF-16 order).
    assert by_bytes == ["/a", "/z", "/é", "/猫", "/\uffff", "/🐱"]


def test_every_route_of_the_master_is_reserved() -> None:
    """A key named like a route is escaped by the clients (key_path): every exact route of
    the master must be known as reserved, or its key would reach the route instead."""
    from kittenfs.master import handlers

    for route in handlers._ROUTES:
        assert is_reserved(route), route
        assert key_path(route) != route


def test_the_console_escapes_the_same_routes() -> None:
    """The web console names keys in URLs as key_path does, from its own copy of the
    reserved paths (master/ui/console.js): the copy must be the same."""
    import json
    import re
    from importlib import resources

    from kittenfs.keys import RESERVED_PATHS, RESERVED_PREFIXES

    script = resources.files("kittenfs.master").joinpath("ui", "console.js").read_text()
    paths = re.search(r"const RESERVED = new Set\((\[.*?\])\);", script)
    prefixes = re.search(r"const RESERVED_PREFIXES = (\[.*?\]);", script)
    assert paths and prefixes
    assert set(json.loads(paths.group(1))) == RESERVED_PATHS
    assert tuple(json.loads(prefixes.group(1))) == RESERVED_PREFIXES
