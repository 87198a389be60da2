"""The master's index: the interface callers use (``Index``, base.py), its engines
(LevelDB, leveldb.py, the embedded default; PostgreSQL, postgres.py) and how ``--index``
picks one (engine.py)."""

from .base import HELD, EntryId, Index, NoLongerPending, Raced, Space
from .engine import open_index
from .leveldb import SCAN_BATCH, LevelDBIndex

__all__ = [
    "HELD",
    "SCAN_BATCH",
    "EntryId",
    "Index",
    "LevelDBIndex",
    "NoLongerPending",
    "Raced",
    "Space",
    "open_index",
]
