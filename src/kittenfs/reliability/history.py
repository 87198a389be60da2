"""The history of a run: every operation with its start, end and outcome."""

from dataclasses import asdict, dataclass
from typing import Any

#: Outcomes: the client was told it worked, was told it failed, or cannot know.
OK, FAILED, UNKNOWN = "ok", "failed", "unknown"


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation.  ``md5`` is the value written, or read ("" for absent)."""

    client: int
    kind: str  # put, get, delete
    key: str
    md5: str
    size: int
    start: float
    end: float
    outcome: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def definitely_after(later: Op, earlier: Op) -> bool:
    """Return True if ``later`` began after ``earlier`` ended (real-time order)."""
    return later.start > earlier.end
