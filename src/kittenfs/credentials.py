"""Credentials: who may read, write or administer which keys, and how a request proves it.

A credential has an access key (its public id), a role, an optional key prefix it is
confined to and an optional expiry.  Its secret is never stored: it is derived from the
master's own key and a per-credential salt (``secret_of``), so the master recomputes it to
check a token, and a copy of the credential store alone reveals no secret.  One credential
serves both APIs:

- the native API takes ``Authorization: Bearer kfs.<access key>.<secret>`` (``token_of``);
- the S3 API (to come) takes the access key and the secret as an AWS key pair.

Roles are ordered: ``write`` can do all that ``read`` can, and ``admin`` all that ``write``
can, plus jobs, workers and credentials.  Everything here is pure.
"""

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import IntEnum

from .signing import derive

#: What a token starts with, so a credential is recognisable in logs and config.
TOKEN_PREFIX = "kfs"
#: Longest expiry a signed link may have, in seconds (as S3's presigned URLs): a link works
#: for anyone who holds it, and cannot be revoked but with its credential.
MAX_LINK_SECONDS = 7 * 24 * 3600

_ACCESS_KEY = re.compile(r"KFS[A-Z2-7]{17}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{40}")
_DURATION = re.compile(r"(\d+)([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Role(IntEnum):
    """What a credential may do; each role includes the ones below it."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def named(cls, name: str) -> "Role":
        """Return the role called ``name`` (``read``, ``write``, ``admin``); ValueError else."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"role {name!r}: must be read, write or admin") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Credential:
    """One stored credential (the master's ``a:<access key>`` record; no secret in it)."""

    access_key: str
    role: str
    prefix: str
    expires_ms: int  # 0: never
    created_ms: int
    salt: str  # hex; with the master's key it gives the secret

    def expired(self, now_ms: int) -> bool:
        """Return True once the credential's expiry has passed."""
        return bool(self.expires_ms) and now_ms >= self.expires_ms

    def describe(self) -> dict[str, object]:
        """Return what ``GET /_keys`` shows of it (never its secret)."""
        return {
            "access_key": self.access_key,
            "role": self.role,
            "prefix": self.prefix,
            "expires_ms": self.expires_ms or None,
            "created_ms": self.created_ms,
        }


def new_credential(role: Role, prefix: str, expires_ms: int, now_ms: int) -> Credential:
    """Return a fresh credential with a random access key and salt."""
    access = "KFS" + base64.b32encode(secrets.token_bytes(15)).decode("ascii")[:17]
    return Credential(access, role.label, prefix, expires_ms, now_ms, secrets.token_hex(16))


def secret_of(master_key: bytes, credential: Credential) -> str:
    """Return the credential's secret: 40 URL-safe characters derived from the master key."""
    digest = hmac.new(
        derive(master_key, "credential-secrets"),
        f"{credential.access_key}\n{credential.salt}".encode("ascii"),
        hashlib.sha256,
    ).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:40]


def token_of(access_key: str, secret: str) -> str:
    """Return the bearer token of a credential: ``kfs.<access key>.<secret>``."""
    return f"{TOKEN_PREFIX}.{access_key}.{secret}"


def parse_token(token: str) -> tuple[str, str] | None:
    """Return the (access key, secret) a token names, or None if it is not a kittenFS token."""
    prefix, _, rest = token.partition(".")
    access, _, secret = rest.partition(".")
    if prefix != TOKEN_PREFIX or not _ACCESS_KEY.fullmatch(access) or not _SECRET.fullmatch(secret):
        return None
    return access, secret


def is_access_key(text: str) -> bool:
    """Return True if ``text`` has the shape of an access key."""
    return bool(_ACCESS_KEY.fullmatch(text))


def secrets_match(expected: str, given: str) -> bool:
    """Compare two secrets in constant time."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))


def covers(prefix: str, key: str) -> bool:
    """Return True if a credential confined to ``prefix`` may touch ``key``."""
    return key.startswith(prefix)


def listing_prefix(scope: str, asked: str) -> str | None:
    """Return the prefix a listing of ``asked`` becomes for a credential confined to
    ``scope``: the narrower of the two, or None if no key can be under both."""
    if scope.startswith(asked):
        return scope
    if asked.startswith(scope):
        return asked
    return None


def parse_duration(text: str) -> int:
    """Return the seconds of a duration such as ``90``, ``90s``, ``30m``, ``12h``, ``30d`` or
    ``2w``; raise ValueError for anything else (zero included)."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m, 12h, 30d or 2w")
    return int(match.group(1)) * _UNITS[match.group(2)]
