"""Placement: which workers hold a key, and where a blob lives on a worker's disk.

Everything here is pure and pinned by golden tests (tests/unit/test_placement.py).
Changing the key hash or the blob path orphans every stored blob file; changing ``rank``
moves where new writes go (records keep their replica lists).  Either needs a migration,
not an edit.
"""

import hashlib
import os
import time
from collections.abc import Iterable


def key_hash(key: str) -> str:
    """Return the 32-hex-digit hash of a key that names its blobs on disk."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _score(key: bytes, node: str) -> bytes:
    return hashlib.md5(node.encode("utf-8") + b"\x00" + key, usedforsecurity=False).digest()


def rank(key: str, nodes: Iterable[str]) -> list[str]:
    """Return ``nodes`` ordered by rendezvous (highest-random-weight) preference for ``key``.

    The first R entries are the key's preferred replicas.  Adding a node moves a key only
    if the new node outranks one of its top R, so about R/N of the keys move.
    """
    encoded = key.encode("utf-8")
    return sorted(nodes, key=lambda node: (_score(encoded, node), node), reverse=True)


def new_version(now_ns: int | None = None, entropy: bytes | None = None) -> str:
    """Return a fresh 24-hex-digit version id; later writes get larger ids (clock permitting)."""
    ns = time.time_ns() if now_ns is None else now_ns
    tail = os.urandom(4) if entropy is None else entropy
    return f"{ns:016x}{tail.hex()}"


def blob_id(key: str, version: str) -> str:
    """Return the id of one version of a key's value: ``<keyhash>-<version>``."""
    return f"{key_hash(key)}-{version}"


def is_blob_id(text: str) -> bool:
    """Return True if ``text`` has the shape of a blob id (safe to use as a file name)."""
    head, sep, tail = text.partition("-")
    return bool(sep) and len(head) == 32 and len(tail) == 24 and _is_hex(head + tail)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def blob_relpath(blob: str) -> str:
    """Return the path of a blob file under a worker's ``blobs/`` directory: ``ab/cd/<id>``."""
    return f"{blob[0:2]}/{blob[2:4]}/{blob}"
