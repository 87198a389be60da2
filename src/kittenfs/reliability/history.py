"""The history of a run: every operation with its start, end and outcome."""

from dataclasses import asdict, dataclass
from typing import Any

#: Outcomes: the client was told it worked, was told it failed, or cannot know.
OK, FAILED, UNKNOWN = "ok", "failed", "unknown"
#: The kinds of operation that write a whole value: a PUT (native, or S3's PutObject) and
#: an S3 CompleteMultipartUpload.  The S3 workload's other steps (create, part, abort) write
#: nothing a read can see.
WRITES = frozenset({"put", "complete"})


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation.  ``md5`` is the value written, or read ("" for absent);
    ``etag`` (S3 only) is the ETag the written bytes must have, or the one a read was given."""

    client: int
    kind: str  # put, get, delete; S3 also complete, and create, part, abort
    key: str
    md5: str
    size: int
    start: float
    end: float
    outcome: str
    detail: str = ""
    etag: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def definitely_after(later: Op, earlier: Op) -> bool:
    """Return True if ``later`` began after ``earlier`` ended (real-time order)."""
    return later.start > earlier.end
