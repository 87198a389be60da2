"""The checker: does every read, during the run and after it, agree with the history?

A read that returns bytes must return the value of a write whose outcome was ok or unknown
(never a failed one, never bytes nobody wrote), and no acknowledged write or delete of the key
may lie strictly between that write and the read.  A read that finds the key absent must be
explained by a delete (ok or unknown) or by the key never having been written, again with no
acknowledged write strictly in between.  The final reads, made after the faults stopped and
repair ran, are judged the same way: an acknowledged write that they do not show is lost,
and a key that cannot be read at all then is unreadable.

Bytes nobody wrote are a phantom, or partial when they are fewer than some write of the key
gave it (a multipart object cut short).  An S3 read's ETag must be the one its bytes were
written with.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from .history import FAILED, OK, WRITES, Op, definitely_after

#: Kinds of violation; each must be 0.
VIOLATIONS = (
    "lost_writes",
    "stale_reads",
    "resurrected",
    "failed_write_visible",
    "phantom",
    "partial",
    "wrong_etag",
    "unreadable",
)


@dataclass
class Verdict:
    """What the checker found."""

    ops: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def flag(self, kind: str, message: str) -> None:
        self.violations[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {message}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "ops": dict(self.ops),
            "violations": {k: self.violations[k] for k in VIOLATIONS},
            "examples": self.examples,
        }


def check(history: list[Op], final: list[Op]) -> Verdict:
    """Judge every ok read of the run and every final read against the writes."""
    verdict = Verdict()
    writes: dict[str, list[Op]] = defaultdict(list)
    by_md5: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        verdict.ops[f"{op.kind} {op.outcome}"] += 1
        if op.kind in WRITES or op.kind == "delete":
            writes[op.key].append(op)
        if op.kind in WRITES:
            by_md5[op.md5].append(op)
    for read in history:
        if read.kind == "get" and read.outcome == OK:
            _judge(read, writes[read.key], by_md5, verdict, is_final=False)
    for read in final:
        if read.outcome != OK:
            verdict.flag("unreadable", f"{read.key}: every final read failed ({read.detail})")
            continue
        _judge(read, writes[read.key], by_md5, verdict, is_final=True)
    return verdict


def _judge(
    read: Op, writes: list[Op], by_md5: dict[str, list[Op]], verdict: Verdict, is_final: bool
) -> None:
    acked = [w for w in writes if w.outcome == OK]
    if read.md5:
        sources = [w for w in by_md5.get(read.md5, []) if w.key == read.key]
        if not sources:
            if any(w.size > read.size for w in writes if w.kind in WRITES):
                verdict.flag("partial", f"{read.key}: {read.size} bytes nobody wrote, too few")
            else:
                verdict.flag("phantom", f"{read.key}: bytes {read.md5} nobody wrote")
            return
        if read.etag and sources[0].etag and read.etag != sources[0].etag:
            verdict.flag(
                "wrong_etag", f"{read.key}: {read.md5} read as {read.etag}, not {sources[0].etag}"
            )
        possible = [w for w in sources if w.outcome != FAILED and w.start < read.end]
        if not possible:
            verdict.flag("failed_write_visible", f"{read.key}: {read.md5} from a failed PUT")
            return
        if all(_superseded(w, read, acked) for w in possible):
            later = _superseded(possible[0], read, acked)
            assert later is not None
            kind = (
                "resurrected"
                if later.kind == "delete"
                else ("lost_writes" if is_final else "stale_reads")
            )
            verdict.flag(
                kind,
                f"{read.key}: read {read.md5} after {later.kind} ok "
                f"[{later.start:.3f}, {later.end:.3f}]",
            )
        return
    deletes = [
        w for w in writes if w.kind == "delete" and w.outcome != FAILED and w.start < read.end
    ]
    origin = Op(-1, "delete", read.key, "", 0, float("-inf"), float("-inf"), OK)
    puts = [w for w in acked if w.kind in WRITES]
    if all(_superseded(d, read, puts) for d in [origin, *deletes]):
        verdict.flag(
            "lost_writes" if is_final else "stale_reads",
            f"{read.key}: absent, though an acknowledged PUT came after every delete",
        )


def _superseded(source: Op, read: Op, acked: list[Op]) -> Op | None:
    """Return an acknowledged write or delete strictly between ``source`` and ``read``."""
    for other in acked:
        if other is not source and definitely_after(other, source) and other.end < read.start:
            return other
    return None
