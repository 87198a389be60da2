"""What only the etcd engine has to get right: which failures may be sent to another
member, members listed that are down, answers larger than gRPC's default limit, and keys
of other programs (or of an index under a longer prefix) beside the index's own."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest
from etcdserver import required_etcd
from test_contract import pending, rec

from kittenfs.cluster import free_port_block
from kittenfs.master.index import Space, open_index
from kittenfs.master.index.etcd import EtcdIndex, _put, _unsent


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("details", "unsent"),
    [
        ("failed to connect to all addresses; last error: Connection refused", True),
        ("etcdserver: no leader", True),
        ("Stream removed (recvmsg:Connection reset by peer (104))", False),
        ("etcdserver: request timed out", False),
        ("etcdserver: leader changed", False),
    ],
)
def test_only_a_request_that_never_took_effect_goes_to_another_member(
    details: str, unsent: bool
) -> None:
    """A reset connection says "connect" too, but its transaction may have landed: sent
    again, it would be refused as a duplicate (or applied twice)."""
    assert _unsent(rpc_error(grpc.StatusCode.UNAVAILABLE, details)) is unsent


def run(body: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(body, 120))


def test_a_member_that_is_down_is_passed_over_by_calls_at_once() -> None:
    """With a dead member listed first, fifty concurrent writes and reads all succeed: each
    call walks the members from where the last answer came, on its own."""
    live = required_etcd().index().removeprefix("etcd://")
    url = f"etcd://127.0.0.1:{free_port_block(1)},{live}"

    async def body() -> None:
        index = await open_index(url, Path(), "m-a")
        records = [rec(f"/down/{i}") for i in range(50)]
        await asyncio.gather(*(index.begin_write(pending(r)) for r in records))
        await asyncio.gather(*(index.commit_write(r, []) for r in records))
        found = await asyncio.gather(*(index.current(r.key) for r in records))
        assert found == [(Space.LIVE, r) for r in records]
        await index.close()

    run(body())


def test_pages_larger_than_grpcs_default_answer_are_read() -> None:
    """A page of 1000 records with metadata can pass gRPC's default 4 MiB answer."""
    url = required_etcd().index()
    meta = (("x-amz-meta-big", "m" * 8000),)
    records = [dataclasses.replace(rec(f"/big/{i:04d}"), meta=meta) for i in range(1100)]

    async def body() -> None:
        index = await open_index(url, Path())
        await index.load(records, [], None)
        assert [r async for r in index.records(Space.LIVE)] == records
        await index.close()

    run(body())


def test_keys_beside_the_index_are_not_its_own() -> None:
    """An index under ``kfs`` exports only its entries: not another index's under
    ``kfs/d`` (whose keys start ``kfs/d/``), nor another program's ``kfs/data``."""
    etcd = required_etcd()
    base = etcd.index()
    nested = f"{base}/d"

    async def body() -> None:
        outer = await open_index(base, Path())
        assert isinstance(outer, EtcdIndex)
        inner = await open_index(nested, Path())
        await inner.cluster_id("inner")
        await inner.begin_write(pending(rec("/k")))
        await outer.client.txn([], [_put(outer._prefix + b"data", b"another program's")])
        await outer.put_setting("x", "y")
        await outer.put_setting("x", None)
        assert [e async for e in outer.export()] == []
        await inner.close()
        await outer.close()

    run(body())
