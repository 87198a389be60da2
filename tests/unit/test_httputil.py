"""HTTP helpers: single byte ranges, ETags and JSON error responses."""

import json

import pytest

from kittenfs.httputil import HTTPProblem, etag, etag_matches, parse_range, range_asked

MD5 = "5d41402abc4b2a76b9719d911017c592"


# --- parse_range: satisfiable ranges ------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=0-9", 10, (0, 9)),
        ("bytes=2-5", 10, (2, 5)),
        ("bytes=9-9", 10, (9, 9)),
        ("bytes=0-", 10, (0, 9)),
        ("bytes=3-", 10, (3, 9)),
        ("bytes=9-", 10, (9, 9)),
        ("bytes=-1", 10, (9, 9)),
        ("bytes=-4", 10, (6, 9)),
        ("bytes=-10", 10, (0, 9)),
        ("bytes=0-0", 1, (0, 0)),
        ("bytes=-1", 1, (0, 0)),
        ("bytes=007-008", 10, (7, 8)),  # leading zeros are still digits
        ("BYTES=1-2", 10, (1, 2)),  # the unit is case-insensitive
        ("bytes = 1-2", 10, (1, 2)),
        ("bytes= 1-2 ", 10, (1, 2)),
    ],
)
def test_satisfiable(header: str, size: int, span: tuple[int, int]) -> None:
    assert parse_range(header, size) == span


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        ("bytes=5-10", 10, (5, 9)),
        ("bytes=0-99999999999999999999", 10, (0, 9)),
        ("bytes=9-1000", 10, (9, 9)),
    ],
)
def test_end_past_size_is_clamped(header: str, size: int, span: tuple[int, int]) -> None:
    assert parse_range(header, size) == span


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        ("bytes=-11", 10, (0, 9)),
        ("bytes=-1000000", 10, (0, 9)),
        ("bytes=-5", 1, (0, 0)),
    ],
)
def test_suffix_larger_than_size_is_the_whole_value(
    header: str, size: int, span: tuple[int, int]
) -> None:
    assert parse_range(header, size) == span


# --- parse_range: 416 ---------------------------------------------------------------------


def _problem(header: str, size: int) -> HTTPProblem:
    with pytest.raises(HTTPProblem) as info:
        parse_range(header, size)
    problem = info.value
    assert problem.status == 416
    assert problem.headers == {"Content-Range": f"bytes */{size}"}
    return problem


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10-", 10),  # first == size
        ("bytes=10-20", 10),
        ("bytes=11-11", 10),
        ("bytes=99999999999999999999-", 10),
        ("bytes=-0", 10),  # empty suffix
        ("bytes=-0", 0),
        ("bytes=0-", 0),  # an empty value has no bytes to serve
        ("bytes=0-0", 0),
        ("bytes=-1", 0),
        ("bytes=-100", 0),
        ("bytes=5-3", 10),  # last before first
    ],
)
def test_unsatisfiable(header: str, size: int) -> None:
    problem = _problem(header, size)
    assert problem.error in ("range_not_satisfiable", "bad_range")


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10-", 10),
        ("bytes=-0", 10),
        ("bytes=0-", 0),
    ],
)
def test_unsatisfiable_is_reported_as_such(header: str, size: int) -> None:
    assert _problem(header, size).error == "range_not_satisfiable"


@pytest.mark.parametrize(
    ("header", "honoured"),
    [
        (None, False),
        ("", False),
        ("  ", False),  # absent or empty: nothing asked
        ("items=0-5", False),
        ("Items = 0-5", False),  # an unknown unit is ignored (RFC 9110 14.2)
        ("bytes=0-5", True),
        ("BYTES=0-5", True),
        ("bytes=x", True),  # bytes: parsed, maybe 416
        ("0-5", True),
        ("=0-5", True),
        ("bytes 0-5", True),  # no unit: garbled, so 416
    ],
)
def test_which_range_headers_are_honoured(header: str | None, honoured: bool) -> None:
    headers = {} if header is None else {"Range": header}
    assert (range_asked(headers) is not None) is honoured


@pytest.mark.parametrize(
    "header",
    [
        "",  # empty header
        "bytes",
        "bytes=",
        "bytes=-",
        "0-5",  # no "bytes="
        "=0-5",
        "items=0-5",
        "bytes 0-5",
        "bytes=0-1,2-3",  # several ranges
        "bytes=0-1, 5-",
        "bytes=0-1,",
        "bytes=a-b",
        "bytes=1-b",
        "bytes=a-",
        "bytes=-a",
        "bytes=0x1-2",
        "bytes=1e3-",
        "bytes=+1-2",
        "bytes=-+1",
        "bytes=--1",
        "bytes=1-2-3",
        "bytes=1 -2",
        "bytes=1.5-2",
        "bytes=5",  # no dash
        "bytes=²-",  # Unicode superscript two: str.isdigit() says yes, int() says no
        "bytes=0-²",
        "bytes=-²",
        "bytes=١-٢",  # Arabic-Indic digits: int() would accept them
        "bytes=０-１",  # full-width digits
    ],
)
def test_malformed(header: str) -> None:
    assert _problem(header, 10).error == "bad_range"


def test_problem_response_is_json_with_content_range() -> None:
    problem = _problem("bytes=20-", 10)
    response = problem.response()
    assert response.status == 416
    assert response.headers["Content-Range"] == "bytes */10"
    assert response.content_type == "application/json"
    body = json.loads(response.body)  # type: ignore[arg-type]
    assert body["error"] == "range_not_satisfiable"
    assert "bytes=20-" in body["detail"]


@pytest.mark.parametrize(
    "header", ["bytes=" + "1" * 5000 + "-", "bytes=0-" + "1" * 5000, "bytes=-" + "1" * 5000]
)
def test_absurdly_long_numbers(header: str) -> None:
    # A 5000-digit number fits in one header line (aiohttp allows 8190 bytes).  Any answer
    # but a crash is fine: clamp to the value, or 416.
    try:
        span = parse_range(header, 10)
    except HTTPProblem as problem:
        assert problem.status == 416
    else:
        assert span[1] == 9


# --- ETags --------------------------------------------------------------------------------


def test_etag_is_quoted_md5() -> None:
    assert etag(MD5) == '"5d41402abc4b2a76b9719d911017c592"'


@pytest.mark.parametrize(
    "header",
    [
        f'"{MD5}"',
        f'W/"{MD5}"',  # weak comparison: If-None-Match ignores the weak marker
        f' "{MD5}" ',
        f'"other", "{MD5}"',
        f'"other",W/"{MD5}","third"',
        "*",
        " * ",
        '"other", *',
    ],
)
def test_etag_matches(header: str) -> None:
    assert etag_matches(header, MD5)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        '"other"',
        MD5,  # unquoted is not an entity tag
        f'"{MD5.upper()}"',  # entity tags are compared byte for byte
        f'"{MD5}x"',
        '"other", W/"another"',
        "**",
        f'w/"{MD5}"',  # the weak marker is a case-sensitive "W/"
    ],
)
def test_etag_does_not_match(header: str | None) -> None:
    assert not etag_matches(header, MD5)
