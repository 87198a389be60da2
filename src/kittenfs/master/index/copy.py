"""``kittenfs index copy``: a master's index from one engine to another, offline, verified
entry by entry.

Every engine exports its whole state as ``Entry`` values in one order (base.py), so a copy is
an export of the source imported into the target in batches, and the check an export of both,
compared in step: the copy succeeds only if the two are equal entry for entry.

Offline: no master may use either index while it runs.  A LevelDB index is locked by its
master, so opening it fails; for PostgreSQL, the copy refuses while a master's connections
are there (``Index.masters_attached``).  A change made anyway during the copy fails the check.
The target must be empty; a copy cut off leaves it partly written (drop it and copy again).
The master key is not in any index: the master started on the copy keeps its data directory
(its ``master.key``).
"""

import asyncio
from collections import Counter
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

from .base import Entry, Index, Kind
from .engine import SPECS, describe, open_index

#: Entries written per commit.
BATCH = 2000


class CopyError(Exception):
    """The copy cannot start, or its check found the target different from the source."""


@dataclass
class Copied:
    """What a copy wrote: how many entries of each kind."""

    kinds: Counter[Kind] = field(default_factory=Counter)

    @property
    def entries(self) -> int:
        return sum(self.kinds.values())


def copy_index(source_spec: str, target_spec: str) -> Copied:
    """Copy the index ``source_spec`` names into the empty one ``target_spec`` names, then
    check the two are equal entry by entry; raise CopyError if either cannot be used (and
    ConfigError if an engine cannot be reached)."""
    for spec in (source_spec, target_spec):
        if not spec.startswith(SPECS):
            raise CopyError(
                f"{spec!r}: name an index as leveldb:DIR, postgresql://... or etcd://..."
            )
    if source_spec.startswith("leveldb:") and not Path(source_spec[8:]).is_dir():
        raise CopyError(f"{source_spec}: no such index")
    return asyncio.run(_copy_checked(source_spec, target_spec))


async def _copy_checked(source_spec: str, target_spec: str) -> Copied:
    source = await _open(source_spec)
    try:
        target = await _open(target_spec)
        try:
            if not await empty(target):
                raise CopyError(f"{describe(target_spec, Path())} is not empty")
            copied = await _copy(source, target)
            await _check(source, target)
            return copied
        finally:
            await target.close()
    finally:
        await source.close()


async def empty(index: Index) -> bool:
    """Return True if ``index`` holds nothing at all (no entry of any kind)."""
    async with aclosing(index.export()) as entries:
        return await anext(entries, None) is None


async def _open(spec: str) -> Index:
    """Open an index for the copy, refusing one a master is using."""
    index = await open_index(spec, Path())
    if await index.masters_attached():
        await index.close()
        raise CopyError(f"a master is using {describe(spec, Path())}: stop it first")
    return index


async def _copy(source: Index, target: Index) -> Copied:
    copied = Copied()
    batch: list[Entry] = []
    async with aclosing(source.export()) as entries:
        async for entry in entries:
            batch.append(entry)
            copied.kinds[entry.kind] += 1
            if len(batch) == BATCH:
                await target.import_entries(batch)
                batch = []
    if batch:
        await target.import_entries(batch)
    return copied


async def _check(source: Index, target: Index) -> None:
    """Raise CopyError at the first entry where the two exports differ."""
    async with aclosing(source.export()) as left, aclosing(target.export()) as right:
        n = 0
        while True:
            a, b = await anext(left, None), await anext(right, None)
            if a != b:
                raise CopyError(
                    f"the copy differs from the source at entry {n}: "
                    f"{_shown(a)} in the source, {_shown(b)} in the copy"
                )
            if a is None:
                return
            n += 1


def _shown(entry: Entry | None) -> str:
    return "nothing" if entry is None else f"{entry.kind.name.lower()} {entry.name!r}"
