"""The index against a model, on every engine: hypothesis runs random sequences of writes,
unlinks, removals, garbage collection and reopens, and after each step the index must
agree with a plain dict on every key, on listings by pages, and on its garbage."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from test_contract import ENGINES, engine_spec

from kittenfs.master.index import Index, Space, open_index
from kittenfs.records import IndexRecord

KEYS = ["/a", "/a/b", "/a\u00e9", "/a\U0001f600", "/ab", "/b", "/\u00e9"]
PREFIXES = ["", "/a", "/a/", "/b", "/\u00e9"]


class IndexModel(RuleBasedStateMachine):
    """One index and the model of what it must hold."""

    spec = ""
    data = Path()

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.index: Index = self.run(open_index(self.spec, self.data))
        self.run(self._clear())
        self.held: dict[str, tuple[Space, IndexRecord]] = {}
        self.garbage: list[IndexRecord] = []
        self.versions = itertools.count()

    def run(self, coro: Any) -> Any:
        return self.runner.run(asyncio.wait_for(coro, 60))

    async def _clear(self) -> None:
        """Empty the index the last example left (each example starts from nothing)."""
        for space in (Space.LIVE, Space.UNLINKED):
            async for record in self.index.records(space):
                await self.index.remove(record)
        for entry, _ in await self.index.garbage():
            await self.index.forget(entry)

    @rule(key=st.sampled_from(KEYS))
    def write(self, key: str) -> None:
        record = IndexRecord(key, f"v{next(self.versions)}", 3, "m", (0, 1, 2), 1, 2)
        replaced = [self.held[key][1]] if key in self.held else []
        self.run(self.index.begin_write(IndexRecord(key, record.version, -1, "", (0, 1, 2), 1, 1)))
        self.run(self.index.commit_write(record, replaced))
        self.held[key] = (Space.LIVE, record)
        self.garbage += replaced

    @rule(key=st.sampled_from(KEYS))
    def unlink(self, key: str) -> None:
        if key in self.held and self.held[key][0] is Space.LIVE:
            record = self.held[key][1]
            self.run(self.index.unlink(record))
            self.held[key] = (Space.UNLINKED, record)

    @rule(key=st.sampled_from(KEYS))
    def remove(self, key: str) -> None:
        if key in self.held:
            _, record = self.held.pop(key)
            self.run(self.index.remove(record))
            self.garbage.append(record)

    @rule()
    def collect_garbage(self) -> None:
        for entry, _ in self.run(self.index.garbage()):
            self.run(self.index.forget(entry))
        self.garbage = []

    @rule()
    def reopen(self) -> None:
        self.run(self.index.close())
        self.index = self.run(open_index(self.spec, self.data))

    @invariant()
    def every_key_as_modelled(self) -> None:
        for key in KEYS:
            assert self.run(self.index.current(key)) == self.held.get(key), key

    @invariant()
    def listings_as_modelled(self) -> None:
        for space in (Space.LIVE, Space.UNLINKED):
            for prefix in PREFIXES:
                want = sorted(
                    (k for k, (s, _) in self.held.items() if s is space and k.startswith(prefix)),
                    key=str.encode,
                )
                assert self._pages(space, prefix) == want, (space, prefix)

    def _pages(self, space: Space, prefix: str) -> list[str]:
        found: list[str] = []
        start = ""
        while True:
            page, start = self.run(self.index.keys(space, prefix, start, 2))
            found += page
            if not start:
                return found

    @invariant()
    def garbage_as_modelled(self) -> None:
        stored = sorted((r.key, r.version) for _, r in self.run(self.index.garbage()))
        assert stored == sorted((r.key, r.version) for r in self.garbage)

    def teardown(self) -> None:
        self.run(self.index.close())
        self.runner.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_index_follows_its_model(engine: str, tmp_path: Path) -> None:
    IndexModel.spec = engine_spec(engine, tmp_path)
    IndexModel.data = tmp_path
    run = IndexModel.TestCase
    run.settings = settings(
        max_examples=25,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run().runTest()
