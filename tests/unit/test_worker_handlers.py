"""The worker's upload of a value followed by its metadata frame (worker/handlers.Trailer)."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kittenfs.records import MAX_META_FRAME, RecordError, meta_frame
from kittenfs.worker.handlers import Trailer

META = (("content-type", "text/plain"), ("x-amz-checksum-crc32", "AAAAAA=="))


async def pieces(body: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in [*sorted(set(cuts)), len(body)]:
        if start < cut <= len(body):
            yield body[start:cut]
            start = cut


def split(body: bytes, cuts: list[int]) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    async def main() -> tuple[bytes, tuple[tuple[str, str], ...]]:
        trailer = Trailer(pieces(body, cuts))
        value = b"".join([chunk async for chunk in trailer.value()])
        return value, trailer.meta()

    return asyncio.run(main())


@settings(max_examples=200)
@given(
    st.sampled_from([0, 1, 100, MAX_META_FRAME - 1, MAX_META_FRAME, 3 * MAX_META_FRAME + 5]),
    st.lists(st.integers(min_value=0, max_value=4 * MAX_META_FRAME), max_size=8),
    st.booleans(),
)
def test_any_chunking_gives_the_value_and_its_metadata(
    size: int, cuts: list[int], with_meta: bool
) -> None:
    value = bytes(i % 251 for i in range(size))
    meta = META if with_meta else ()
    assert split(value + meta_frame(meta), cuts) == (value, meta)


def test_a_body_without_its_frame_is_refused() -> None:
    with pytest.raises(RecordError):
        split(b"x" * 100_000, [50_000])


def test_the_metadata_is_not_known_before_the_body_has_ended() -> None:
    with pytest.raises(RecordError, match="not been read"):
        Trailer(pieces(b"", [])).meta()
