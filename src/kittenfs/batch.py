"""The batch wire format: many small blob operations in one master -> worker exchange.

A small PUT costs the master one HTTP exchange per replica, and that exchange, not the disk,
was the cost of a small write (docs/performance.md).  So the master gathers the small puts and
the deletes bound for one worker while an earlier batch to it is on the wire, and sends them
as one ``POST /batch``; the worker applies them concurrently, so its LevelDB commits them with
one fsync, and answers each one.  docs/api.md ("Worker API") is the contract:

    request body:  <4-byte big-endian n> <n bytes of JSON: {"ops": [op, ...]}> <values>
    op:            {"op": "put", "blob": id, "key": key, "version": v, "size": bytes,
                    "meta": [[name, value], ...]}      (meta only when the value has some)
                   {"op": "delete", "blob": id}
    values:        the values of the put ops, in op order, back to back
    response:      200 {"results": [{"status": 201, "size": n, "md5": hex}
                                    | {"status": 204} | {"status": 404}
                                    | {"status": 4xx/5xx, "error": code, "message": text}]}

The same batches travel as messages on one WebSocket per worker (``GET /batch``, upgraded:
the batch stream, worker/batch_stream.py and master/batch_stream.py), each message an id
and then the request body, each answer the id and then the response's JSON.
"""

import json
import struct
from dataclasses import dataclass

from .httputil import parse_json
from .keys import InvalidKey, check_key
from .placement import blob_id, is_blob_id
from .records import Meta, RecordError, meta_block, meta_from_json

#: Most operations in one batch.
MAX_OPS = 512
#: Most bytes of values in one batch (the request also fits the worker's body limit).
MAX_VALUE_BYTES = 4 * 1024 * 1024
#: Most bytes of the JSON manifest.
MAX_MANIFEST_BYTES = 1024 * 1024
#: Most bytes of a whole batch body: its length prefix, its manifest and its values.
MAX_BODY_BYTES = 4 + MAX_MANIFEST_BYTES + MAX_VALUE_BYTES
#: The batch stream (``GET /batch`` upgraded to a WebSocket) carries each batch, and each
#: answer, as one binary message that begins with an id of this many bytes: the id pairs an
#: answer with its batch.
STREAM_ID_BYTES = 8
#: Largest message on the batch stream.
MAX_STREAM_MESSAGE = STREAM_ID_BYTES + MAX_BODY_BYTES

_LENGTH = struct.Struct(">I")


class BadBatch(ValueError):
    """A batch body that does not follow the format; the message says where."""


@dataclass(frozen=True, slots=True)
class PutOp:
    """Store ``value`` as ``blob``, one version of ``key``, with its metadata ``meta``."""

    blob: str
    key: str
    version: str
    value: bytes
    meta: Meta = ()


@dataclass(frozen=True, slots=True)
class DeleteOp:
    """Delete ``blob`` (a blob that is not there counts as deleted)."""

    blob: str


Op = PutOp | DeleteOp


def encode(ops: list[Op]) -> bytes:
    """Return the request body carrying ``ops``."""
    manifest = [
        _put_entry(op) if isinstance(op, PutOp) else {"op": "delete", "blob": op.blob} for op in ops
    ]
    head = json.dumps({"ops": manifest}, separators=(",", ":"), ensure_ascii=False).encode()
    return b"".join(
        [_LENGTH.pack(len(head)), head, *(op.value for op in ops if isinstance(op, PutOp))]
    )


def _put_entry(op: PutOp) -> dict[str, object]:
    entry: dict[str, object] = {
        "op": "put",
        "blob": op.blob,
        "key": op.key,
        "version": op.version,
        "size": len(op.value),
    }
    if op.meta:
        entry["meta"] = op.meta
    return entry


def decode(body: bytes) -> list[Op]:
    """Return the operations of a request body; raise BadBatch if it is malformed."""
    if len(body) < _LENGTH.size:
        raise BadBatch("the body is shorter than its length prefix")
    (length,) = _LENGTH.unpack_from(body)
    if length > MAX_MANIFEST_BYTES or _LENGTH.size + length > len(body):
        raise BadBatch(f"the manifest length {length} is out of range")
    try:
        manifest = parse_json(body[_LENGTH.size : _LENGTH.size + length])
        items = manifest["ops"]
    except (ValueError, TypeError, KeyError):
        raise BadBatch('the manifest is not JSON of the form {"ops": [...]}') from None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_OPS:
        raise BadBatch(f"ops must be a list of 1..{MAX_OPS} operations")
    offset = _LENGTH.size + length
    ops: list[Op] = []
    for number, item in enumerate(items):
        op, offset = _decode_op(number, item, body, offset)
        ops.append(op)
    if offset != len(body):
        raise BadBatch(f"{len(body) - offset} bytes follow the last value")
    return ops


def _decode_op(number: int, item: object, body: bytes, offset: int) -> tuple[Op, int]:
    if not isinstance(item, dict) or not is_blob_id(str(item.get("blob", ""))):
        raise BadBatch(f"op {number}: needs a valid blob id")
    blob = str(item["blob"])
    if item.get("op") == "delete":
        return DeleteOp(blob), offset
    if item.get("op") != "put":
        raise BadBatch(f"op {number}: op must be put or delete")
    key, version, size = item.get("key"), item.get("version"), item.get("size")
    if not isinstance(key, str) or not isinstance(version, str):
        raise BadBatch(f"op {number}: key and version must be strings")
    try:
        check_key(key)
    except InvalidKey as exc:
        raise BadBatch(f"op {number}: {exc}") from None
    if blob_id(key, version) != blob:
        raise BadBatch(f"op {number}: the blob id does not match its key and version")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(body) - offset:
        raise BadBatch(f"op {number}: size must count bytes present in the body")
    try:
        meta = meta_from_json(item.get("meta", []))
        meta_block(meta)  # within its limit
    except RecordError as exc:
        raise BadBatch(f"op {number}: {exc}") from None
    return PutOp(blob, key, version, body[offset : offset + size], meta), offset + size
