"""A worker's identity: a unique id, the index the master assigned and the cluster it joined,
kept in its data dir.

Stored as ``worker.json`` (written to a temp file, fsynced and renamed), so a restarted worker
comes back as the same worker with the same index.
"""

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..datadir import write_durably

FILENAME = "worker.json"


@dataclass
class Identity:
    """Who this worker is; ``index`` is None until the master has assigned one, and
    ``cluster`` (the id of the master's cluster) until the first registration: from then on
    the worker belongs to that cluster and refuses any other."""

    id: str
    index: int | None = None
    cluster: str | None = None

    @classmethod
    def load(cls, data: Path) -> "Identity":
        """Return the identity kept in ``data``, creating a fresh one the first time."""
        path = data / FILENAME
        if not path.exists():
            identity = cls(f"w-{uuid.uuid4().hex[:12]}")
            identity.save(data)
            return identity
        stored = json.loads(path.read_text())
        return cls(str(stored["id"]), stored.get("index"), stored.get("cluster"))

    def save(self, data: Path) -> None:
        """Write the identity durably."""
        body = {"id": self.id, "index": self.index, "cluster": self.cluster}
        write_durably(data / FILENAME, json.dumps(body).encode())
