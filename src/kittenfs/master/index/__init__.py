"""The master's index: the interface callers use (``Index``, base.py) and its LevelDB
implementation (``LevelDBIndex``, leveldb.py)."""

from .base import HELD, EntryId, Index, Space
from .leveldb import SCAN_BATCH, LevelDBIndex

__all__ = ["HELD", "SCAN_BATCH", "EntryId", "Index", "LevelDBIndex", "Space"]
