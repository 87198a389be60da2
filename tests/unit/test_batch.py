"""The batch wire format (kittenfs/batch.py): what the master sends a worker in one request."""

import contextlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kittenfs import batch
from kittenfs.placement import blob_id

VERSION = "17979cfe3d85cd1501020304"


def put(key: str, value: bytes) -> batch.PutOp:
    return batch.PutOp(blob_id(key, VERSION), key, VERSION, value)


def body(manifest: object, values: bytes = b"") -> bytes:
    head = json.dumps(manifest).encode()
    return struct.pack(">I", len(head)) + head + values


def test_golden_encoding() -> None:
    """The bytes on the wire, pinned: a worker and a master of different builds must agree."""
    ops: list[batch.Op] = [put("/a", b"xyz"), batch.DeleteOp(blob_id("/b", VERSION))]
    assert batch.encode(ops) == (
        b'\x00\x00\x00\xe5{"ops":[{"op":"put","blob":"6a50dc8584134c7de537c0052ff6d236-'
        b'17979cfe3d85cd1501020304","key":"/a","version":"17979cfe3d85cd1501020304","size":3},'
        b'{"op":"delete","blob":"9812b0b9d61e09b927d03ff93f64530d-17979cfe3d85cd1501020304"}]}'
        b"xyz"
    )


def test_a_put_carries_its_metadata_only_when_it_has_some() -> None:
    meta = (("content-type", "text/plain"), ("x-amz-meta-k", "ü"))
    op = batch.PutOp(blob_id("/a", VERSION), "/a", VERSION, b"xyz", meta)
    raw = batch.encode([op, put("/b", b"")])
    assert b'"size":3,"meta":[["content-type","text/plain"],["x-amz-meta-k","\xc3\xbc"]]}' in raw
    assert raw.count(b'"meta"') == 1
    assert batch.decode(raw) == [op, put("/b", b"")]


@pytest.mark.parametrize(
    ("meta", "why"),
    [
        ([["only a name"]], "string pairs"),
        ("text", "string pairs"),
        ([["k", "v" * 20000]], "limit"),
    ],
)
def test_a_put_with_bad_metadata_is_refused(meta: object, why: str) -> None:
    entry = {"op": "put", "blob": blob_id("/a", VERSION), "key": "/a", "version": VERSION}
    raw = body({"ops": [entry | {"size": 0, "meta": meta}]})
    with pytest.raises(batch.BadBatch, match=why):
        batch.decode(raw)


#: Text a key may hold: any character but NUL and lone surrogates (not UTF-8).
KEY_TEXT = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
)

ops_strategy = st.lists(
    st.one_of(
        st.builds(put, KEY_TEXT.map(lambda k: "/" + k), st.binary(max_size=300)),
        st.builds(lambda k: batch.DeleteOp(blob_id("/" + k, VERSION)), st.text(max_size=20)),
    ),
    min_size=1,
    max_size=20,
)


@given(ops_strategy)
def test_any_batch_survives_the_round_trip(ops: list[batch.Op]) -> None:
    assert batch.decode(batch.encode(ops)) == ops


@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_bad_batch(raw: bytes) -> None:
    with contextlib.suppress(batch.BadBatch):
        batch.decode(raw)


@given(ops_strategy, st.integers(min_value=0, max_value=10_000), st.binary(min_size=1, max_size=4))
def test_damaged_batches_are_refused_or_identical(
    ops: list[batch.Op], where: int, junk: bytes
) -> None:
    """Cutting or padding the body never yields other operations than were sent."""
    raw = batch.encode(ops)
    where %= len(raw) + 1
    for damaged in (raw[:where], raw[:where] + junk + raw[where:]):
        try:
            decoded = batch.decode(damaged)
        except batch.BadBatch:
            continue
        assert all(isinstance(op, (batch.PutOp, batch.DeleteOp)) for op in decoded)
        for op in decoded:
            if isinstance(op, batch.PutOp):
                assert blob_id(op.key, op.version) == op.blob


BLOB = blob_id("/k", VERSION)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "shorter than its length prefix"),
        (struct.pack(">I", 99) + b"{}", "out of range"),
        (body([1, 2]), "is not JSON of the form"),
        (body({"ops": []}), "1..512"),
        (body({"ops": [{"op": "put"}]}), "valid blob id"),
        (body({"ops": [{"op": "move", "blob": BLOB}]}), "put or delete"),
        (
            body(
                {
                    "ops": [
                        {"op": "put", "blob": BLOB, "key": "/other", "version": VERSION, "size": 0}
                    ]
                }
            ),
            "does not match",
        ),
        (
            body(
                {"ops": [{"op": "put", "blob": BLOB, "key": "/k", "version": VERSION, "size": 5}]},
                b"abc",
            ),
            "bytes present",
        ),
        (
            body(
                {
                    "ops": [
                        {"op": "put", "blob": BLOB, "key": "/k", "version": VERSION, "size": True}
                    ]
                },
                b"a",
            ),
            "bytes present",
        ),
        (
            body(
                {
                    "ops": [
                        {"op": "put", "blob": BLOB, "key": "\ud800", "version": VERSION, "size": 0}
                    ]
                }
            ),
            "not valid UTF-8",
        ),
        (body({"ops": [{"op": "delete", "blob": BLOB}]}, b"extra"), "follow the last value"),
        (body({"ops": [{"op": "delete", "blob": BLOB}] * 513}), "1..512"),
    ],
)
def test_malformed_batches_say_what_is_wrong(raw: bytes, why: str) -> None:
    with pytest.raises(batch.BadBatch, match=why):
        batch.decode(raw)


@pytest.mark.parametrize("key", ["/" + "k" * 70_000, "no-slash", "/nul\x00", "/\udcff"])
def test_a_batch_with_an_invalid_key_is_refused_whole(key: str) -> None:
    """A bad key anywhere refuses the whole batch, before any operation is applied."""
    good = put("/fine", b"ok")
    manifest = {
        "ops": [
            {"op": "put", "blob": good.blob, "key": good.key, "version": VERSION, "size": 2},
            {
                "op": "put",
                "blob": blob_id("/x", VERSION),
                "key": key,
                "version": VERSION,
                "size": 0,
            },
        ]
    }
    head = json.dumps(manifest).encode()
    with pytest.raises(batch.BadBatch, match="op 1"):
        batch.decode(struct.pack(">I", len(head)) + head + b"ok")


def test_a_deeply_nested_manifest_is_refused() -> None:
    with pytest.raises(batch.BadBatch):
        batch.decode(body_of(b"[" * 100_000))


def body_of(head: bytes) -> bytes:
    return struct.pack(">I", len(head)) + head
