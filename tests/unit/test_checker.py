"""The reliability checker on hand-made histories: it must flag each kind of violation, and
accept what concurrency and unknown outcomes allow."""

from kittenfs.reliability.checker import check
from kittenfs.reliability.history import FAILED, OK, UNKNOWN, Op


def put(md5: str, start: float, end: float, outcome: str = OK) -> Op:
    return Op(0, "put", "/k", md5, 1, start, end, outcome)


def delete(start: float, end: float, outcome: str = OK) -> Op:
    return Op(0, "delete", "/k", "", 0, start, end, outcome)


def read(md5: str, start: float, end: float) -> Op:
    return Op(1, "get", "/k", md5, 1 if md5 else 0, start, end, OK)


def violations(history: list[Op], final: list[Op]) -> dict[str, int]:
    return {k: v for k, v in check(history, final).as_dict()["violations"].items() if v}


def test_an_acknowledged_write_missing_at_the_end_is_lost() -> None:
    assert violations([put("a", 0, 1)], [read("", 5, 5)]) == {"lost_writes": 1}


def test_reading_an_older_value_after_a_newer_acknowledged_one_is_stale() -> None:
    history = [put("a", 0, 1), put("b", 2, 3), read("a", 4, 5)]
    assert violations(history, [read("b", 9, 9)]) == {"stale_reads": 1}


def test_a_deleted_value_coming_back_is_resurrected() -> None:
    assert violations([put("a", 0, 1), delete(2, 3)], [read("a", 9, 9)]) == {"resurrected": 1}


def test_bytes_of_a_failed_write_must_never_show() -> None:
    assert violations([put("a", 0, 1, FAILED)], [read("a", 9, 9)]) == {"failed_write_visible": 1}


def test_bytes_nobody_wrote_are_a_phantom() -> None:
    assert violations([put("a", 0, 1)], [read("zz", 9, 9)]) == {"phantom": 1}


def test_concurrency_and_unknown_outcomes_allow_either_value() -> None:
    history = [
        put("a", 0, 1),
        put("b", 2, 6, UNKNOWN),
        read("a", 3, 4),
        read("b", 5, 7),
        put("c", 8, 10),
        read("b", 9, 9.5),
    ]  # c overlaps that read
    assert violations(history, [read("c", 20, 20)]) == {}
    assert violations([put("a", 0, 1), delete(2, 3, UNKNOWN)], [read("", 9, 9)]) == {}
    assert violations([put("a", 0, 1), delete(2, 3, UNKNOWN)], [read("a", 9, 9)]) == {}


def complete(md5: str, size: int, start: float, end: float, etag: str = "") -> Op:
    return Op(0, "complete", "/k", md5, size, start, end, OK, etag=etag)


def test_a_completed_multipart_upload_is_a_write_like_a_put() -> None:
    history = [put("a", 0, 1), complete("m", 12, 2, 3), read("a", 4, 5)]
    assert violations(history, [read("m", 9, 9)]) == {"stale_reads": 1}
    assert violations([complete("m", 12, 0, 1)], [read("", 9, 9)]) == {"lost_writes": 1}


def test_fewer_bytes_than_a_write_gave_are_partial_and_a_failed_final_read_unreadable() -> None:
    cut = Op(1, "get", "/k", "prefix", 5, 4, 5, OK)
    assert violations([complete("m", 12, 0, 1)], [cut]) == {"partial": 1}
    failing = Op(-1, "get", "/k", "", 0, 9, 9, FAILED, "500")
    assert violations([complete("m", 12, 0, 1)], [failing]) == {"unreadable": 1}


def test_an_s3_read_must_carry_the_etag_its_bytes_were_written_with() -> None:
    written = complete("m", 12, 0, 1, etag="e-2")
    assert violations([written], [Op(1, "get", "/k", "m", 12, 9, 9, OK, etag="e-2")]) == {}
    wrong = Op(1, "get", "/k", "m", 12, 9, 9, OK, etag="m")
    assert violations([written], [wrong]) == {"wrong_etag": 1}
