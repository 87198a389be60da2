"""Signatures: how a request or a link proves who made it, with HMAC-SHA256 and no state.

Three kinds, each with keys of its own (docs/security.md):

- **cluster requests** (``ClusterKey.sign_request``): a master and its workers prove they
  belong to the cluster with an ``X-Kfs-Cluster: <unix time>.<hex>`` header over the method,
  the target (path and query) and the time, accepted for ``SKEW`` seconds either way;
- **blob links** (``ClusterKey.sign_link``): the master sends a client to a worker with a
  short-lived signature of the blob path, its expiry and the fallback URL the worker sends
  the client back to if it cannot serve the blob;
- **key links** (``LinkKey``): URLs the master signs for one key and one method until an
  expiry, on behalf of a credential (``kittenfs sign``, and the fallback URLs above).

Everything here is pure (no I/O; the time is an argument), so it is unit-tested alone.
"""

import hashlib
import hmac
from dataclasses import dataclass

#: Seconds a signed cluster request may be early or late (clock skew plus transit).
SKEW = 300.0
#: The header that carries a cluster request's signature.
HEADER = "X-Kfs-Cluster"
#: Fewest bytes a cluster secret may have.
MIN_SECRET_BYTES = 16


class BadSecret(ValueError):
    """A cluster secret that is too short or empty; the message says why."""


def derive(secret: bytes, purpose: str) -> bytes:
    """Return the key for one purpose: a secret is never used for two things."""
    return hmac.new(secret, f"kittenfs/v1/{purpose}".encode("ascii"), hashlib.sha256).digest()


def _mac(key: bytes, *parts: str) -> str:
    return hmac.new(
        key, "\n".join(parts).encode("utf-8", "surrogateescape"), hashlib.sha256
    ).hexdigest()


def _any_equal(candidates: list[str], given: str) -> bool:
    """Compare ``given`` with every candidate in constant time per candidate."""
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(candidate.encode("ascii"), given.encode("ascii", "replace"))
    return found


class ClusterKey:
    """The keys of one cluster secret (or several during a rotation: the first signs, every
    one is accepted)."""

    def __init__(self, secrets: list[bytes]) -> None:
        if not secrets:
            raise BadSecret("the cluster secret is empty")
        for secret in secrets:
            if len(secret) < MIN_SECRET_BYTES:
                raise BadSecret(
                    f"a cluster secret must have at least {MIN_SECRET_BYTES} "
                    f"bytes; this one has {len(secret)}"
                )
        self._requests = [derive(secret, "cluster-requests") for secret in secrets]
        self._links = [derive(secret, "blob-links") for secret in secrets]

    @classmethod
    def from_text(cls, text: str) -> "ClusterKey":
        """Return the key of a secret file's text: one secret per line, the first current."""
        return cls([line.strip().encode("utf-8") for line in text.splitlines() if line.strip()])

    def sign_request(self, method: str, target: str, now: float) -> str:
        """Return the X-Kfs-Cluster header value for a request of ``method`` to ``target``
        (the raw path and query string) sent at ``now``."""
        stamp = str(int(now))
        return f"{stamp}.{_mac(self._requests[0], method.upper(), target, stamp)}"

    def check_request(self, method: str, target: str, header: str | None, now: float) -> bool:
        """Return True if ``header`` signs this request and its time is within SKEW."""
        if not header:
            return False
        stamp, dot, signature = header.partition(".")
        if (
            not dot
            or not stamp.isascii()
            or not stamp.isdigit()
            or len(stamp) > 12
            or abs(int(stamp) - now) > SKEW
        ):
            return False
        return _any_equal(
            [_mac(key, method.upper(), target, stamp) for key in self._requests], signature
        )

    def sign_link(self, path: str, expires: int, fallback: str) -> str:
        """Return the signature of a link to a blob (``path`` is ``/blob/<id>``)."""
        return _mac(self._links[0], path, str(expires), fallback)

    def check_link(
        self, path: str, expires: int, fallback: str, signature: str, now: float
    ) -> bool:
        """Return True if ``signature`` signs this link and it has not expired."""
        return now <= expires and _any_equal(
            [_mac(key, path, str(expires), fallback) for key in self._links], signature
        )


@dataclass(frozen=True)
class KeyLink:
    """What a signed key link grants: ``method`` on ``key`` until ``expires`` (Unix seconds),
    for ``credential``; ``exclude`` names replicas that failed to serve it."""

    method: str
    key: str
    expires: int
    credential: str
    exclude: tuple[int, ...] = ()

    def parts(self) -> tuple[str, ...]:
        return (
            self.method,
            self.key,
            str(self.expires),
            self.credential,
            ",".join(map(str, self.exclude)),
        )


class LinkKey:
    """Signs and checks key links with a master's own key."""

    def __init__(self, key: bytes) -> None:
        self._key = derive(key, "key-links")

    def sign(self, link: KeyLink) -> str:
        """Return the signature of ``link``."""
        return _mac(self._key, *link.parts())

    def check(self, link: KeyLink, signature: str, now: float) -> bool:
        """Return True if ``signature`` signs ``link`` and it has not expired."""
        return now <= link.expires and _any_equal([self.sign(link)], signature)
