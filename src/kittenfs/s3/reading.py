"""Reading an S3 object: a plain value, or one completed from a multipart upload.

A multipart object's key holds a *manifest* (multipart.py): a small JSON value naming its
parts, which stay stored as keys of their own; its record's ``meta`` says so
(``x-kfs-manifest``: the object's size and ETag).  Its bytes are its parts' bytes in order,
read from the replicas of each part in turn; a part whose record no longer matches the
manifest (an MD5 that differs) fails the read rather than give other bytes.
"""

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from ..errors import NoGoodReplica
from ..master.reader import Found, Reader
from ..records import IndexRecord

#: The ``meta`` entry of a manifest: "<size> <etag>".
MANIFEST = "x-kfs-manifest"


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a multipart object, as its manifest names it."""

    key: str
    size: int
    md5: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What S3 shows of an object: its size and ETag (unquoted)."""

    size: int
    etag: str
    manifest: bool


def describe(record: IndexRecord) -> ObjectInfo:
    """Return the S3 size and ETag of the object whose key has ``record``."""
    manifest = record.meta_value(MANIFEST)
    if manifest is not None:
        size, _, etag = manifest.partition(" ")
        return ObjectInfo(int(size), etag, True)
    return ObjectInfo(record.size, record.md5, False)


def manifest_bytes(parts: list[Part], upload: str) -> bytes:
    """Return the value a multipart object's key holds."""
    listed = [{"key": p.key, "size": p.size, "md5": p.md5} for p in parts]
    return json.dumps({"kittenfs-multipart": 1, "upload": upload, "parts": listed}).encode()


async def _whole(reader: Reader, found: Found) -> bytes:
    size = found.record.size
    if size == 0:
        return b""
    if found.value is not None or reader.whole_value(found, False):
        return await reader.value(found)
    return b"".join([chunk async for chunk in reader.span(found, 0, size - 1)])


async def parts_of(reader: Reader, found: Found) -> list[Part]:
    """Return the parts a manifest names."""
    raw = json.loads(await _whole(reader, found))
    return [Part(p["key"], int(p["size"]), p["md5"]) for p in raw["parts"]]


async def part_sizes(reader: Reader, found: Found) -> list[int]:
    """Return the sizes of the object's parts in order (one part for a single PUT's object)."""
    if not describe(found.record).manifest:
        return [found.record.size]
    return [part.size for part in await parts_of(reader, found)]


async def object_chunks(
    reader: Reader, found: Found, first: int, last: int
) -> AsyncGenerator[bytes, None]:
    """Yield bytes ``first`` .. ``last`` of the object whose key has ``found``."""
    if last < first:
        return
    if not describe(found.record).manifest:
        async for chunk in reader.span(found, first, last):
            yield chunk
        return
    offset = 0
    for part in await parts_of(reader, found):
        start, end = offset, offset + part.size - 1
        offset += part.size
        if end < first or start > last or part.size == 0:
            continue
        stored = await reader.find(part.key)
        if stored is None or stored.record.md5 != part.md5:
            raise NoGoodReplica(f"part {part.key!r} of the object is gone or changed", "no_part")
        span_first, span_last = max(first, start) - start, min(last, end) - start
        async for chunk in reader.span(stored, span_first, span_last):
            yield chunk
