"""Access control of the master: who a request comes from, and whether it may do what it asks.

A request comes from one of (docs/security.md):

- a **credential**: ``Authorization: Bearer <token>``, either the bootstrap admin token
  (``--admin-token``) or a stored credential's ``kfs.<access key>.<secret>``;
- a **signed key link**: ``kfs-*`` query parameters the master signed for one method on one
  key until an expiry, on behalf of a credential that must still be valid when it is used;
- a **member** of the cluster: a worker, signing with the cluster secret (``X-Kfs-Cluster``);
- **anonymous**: none of those; ``--anonymous`` says what it may do.  Without an admin
  token and without ``--anonymous``, auth is off: anonymous may do everything (a master
  reachable from the network refuses to start so, see config.py).

Each route needs one of the ``Need`` levels; a caller without enough gets 401 if it sent no
credential (so it knows to send one) and 403 if its credential does not reach that far.
"""

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import urlencode

from ..clusterauth import is_member, require_member
from ..credentials import (
    Credential,
    Role,
    covers,
    listing_prefix,
    parse_token,
    secret_of,
    secrets_match,
)
from ..datadir import MASTER_KEY_FILE, write_durably
from ..httputil import HTTPProblem, RequestHead
from ..signing import HEADER, ClusterKey, KeyLink, LinkKey, derive
from .index import Index

#: Query parameters of a signed key link.
LINK_PARAMS = ("kfs-method", "kfs-expires", "kfs-credential", "kfs-exclude", "kfs-signature")
#: The credential id of requests without one.
ANONYMOUS = "anonymous"

_ANONYMOUS_ROLES = {"none": None, "read": Role.READ, "write": Role.WRITE}


class Need(Enum):
    """What a route asks of its caller."""

    OPEN = "anyone"
    READ = "read"  # read the key (or list the prefix) named by the request
    WRITE = "write"  # write or delete the key named by the request
    ADMIN = "admin"
    MEMBER = "a member of the cluster"
    MEMBER_OR_ADMIN = "a member of the cluster, or admin"
    MEMBER_OR_READER = "a member of the cluster, or read on every key"


@dataclass(frozen=True)
class Caller:
    """Who sent a request, as far as access is concerned."""

    credential: str = ANONYMOUS  # "anonymous", "admin:<fingerprint>" or an access key
    role: Role | None = None
    prefix: str = "/"
    member: bool = False
    link: KeyLink | None = None

    @property
    def anonymous(self) -> bool:
        """True when the request carried no credential and no link (a 401 invites one)."""
        return self.credential == ANONYMOUS and self.link is None

    @property
    def exclude(self) -> tuple[int, ...]:
        """Replicas that already failed to serve this read (named by a fallback link)."""
        return self.link.exclude if self.link else ()

    def may(self, role: Role, key: str = "/") -> bool:
        """Return True if this caller has ``role`` on ``key``."""
        return self.role is not None and self.role >= role and covers(self.prefix, key)

    def describe(self) -> str:
        if self.member and self.credential == ANONYMOUS:
            return "a member of the cluster"
        role = self.role.label if self.role else "no"
        scope = f" on {self.prefix}" if self.prefix != "/" else ""
        return f"{self.credential} ({role} access{scope})"


def load_master_key(data: Path) -> bytes:
    """Return the master's own key, kept in ``<data>/master.key`` (created, 32 random bytes,
    readable by its owner only, the first time)."""
    path = data / MASTER_KEY_FILE
    if path.exists():
        key = path.read_bytes()
        if len(key) != 32:
            raise ValueError(f"{path} holds {len(key)} bytes, not 32: restore it from a backup")
        return key
    key = os.urandom(32)
    write_durably(path, key, 0o600)
    return key


def key_check(master_key: bytes) -> str:
    """Return a value that tells master keys apart without revealing them: the index keeps
    it, so that a master started with another key (a fresh data directory on a shared
    index) is refused instead of turning every credential and link invalid."""
    return hmac.new(derive(master_key, "key-check"), b"", hashlib.sha256).hexdigest()[:32]


def _fingerprint(master_key: bytes, token: str) -> str:
    """Return what names the admin token in the links it signs: keyed with the master's key,
    so a link does not hand out a hash of the token to guess it from."""
    return hmac.new(
        derive(master_key, "admin-id"), token.encode("utf-8", "surrogateescape"), hashlib.sha256
    ).hexdigest()[:16]


class Access:
    """The master's access rules, over its credential store."""

    def __init__(
        self,
        index: Index,
        master_key: bytes,
        cluster_key: ClusterKey | None,
        admin_token: str | None,
        anonymous: str | None,
    ) -> None:
        self.index = index
        self.master_key = master_key
        self.links = LinkKey(master_key)
        self.cluster_key = cluster_key
        self.admin_token = admin_token
        self._admin = f"admin:{_fingerprint(master_key, admin_token)}" if admin_token else None
        #: Auth is on once an admin credential or an --anonymous rule is given.
        self.enabled = admin_token is not None or anonymous is not None
        self.anonymous_role = _ANONYMOUS_ROLES[anonymous or "none"] if self.enabled else Role.ADMIN

    async def authorize(
        self, request: RequestHead, need: Need, key: str = "/", listing: bool = False
    ) -> Caller:
        """Return the caller of ``request`` if it may do what ``need`` says on ``key``;
        raise 401 or 403 otherwise."""
        if need is Need.OPEN:  # credentials are not even looked at
            return Caller(role=self.anonymous_role)
        caller = await self.caller(request, None if listing else key)
        if self._meets(caller, need, key, listing):
            return caller
        if need is Need.MEMBER:
            require_member(request, self.cluster_key)  # raises: only workers come here
        if caller.anonymous:
            raise HTTPProblem(
                401,
                "unauthorized",
                f"{request.method} {request.path} needs "
                f"{need.value} access: send Authorization: Bearer <token>",
                **{"WWW-Authenticate": 'Bearer realm="kittenfs"'},
            )
        raise HTTPProblem(
            403,
            "forbidden",
            f"{caller.describe()} may not {request.method} {request.path} (needs {need.value})",
        )

    async def identify(self, request: RequestHead) -> Caller:
        """Return who sent ``request``; raise 401 if it is nobody who may do anything (an
        anonymous caller while anonymous may do nothing, or a bad credential)."""
        caller = await self.caller(request, None)
        if caller.role is None and not caller.member:
            raise HTTPProblem(
                401,
                "unauthorized",
                f"{request.path} needs a credential: send Authorization: Bearer <token>",
                **{"WWW-Authenticate": 'Bearer realm="kittenfs"'},
            )
        return caller

    def _meets(self, caller: Caller, need: Need, key: str, listing: bool) -> bool:
        if listing:  # a listing of a prefix that reaches into the caller's scope
            return (
                caller.link is None
                and caller.role is not None
                and caller.role >= Role.READ
                and listing_prefix(caller.prefix, key) is not None
            )
        if caller.link is not None:  # a link grants its method on its key, nothing more
            return need in (Need.READ, Need.WRITE) and caller.may(Role[need.name], key)
        if need in (Need.READ, Need.WRITE, Need.ADMIN):
            return caller.may(Role[need.name], key)
        if need is Need.MEMBER and self.cluster_key is None:
            return True  # without a cluster secret, workers cannot be told from anyone else
        if caller.member:
            return True
        if need is Need.MEMBER_OR_ADMIN:
            return caller.may(Role.ADMIN)
        return need is Need.MEMBER_OR_READER and caller.may(Role.READ) and caller.prefix == "/"

    async def caller(self, request: RequestHead, key: str | None) -> Caller:
        """Work out who sent ``request`` (``key``: the key it names, for a signed link).

        Raise 401 for a credential that is not valid (unknown, revoked, expired, garbled)
        and 403 for a link that is not (altered, expired, or its credential gone)."""
        header = request.headers.get("Authorization")
        if header is not None:
            return await self._bearer(header)
        if "kfs-signature" in request.query and key is not None:
            return await self._link(request, key)
        if HEADER in request.headers and self.cluster_key is not None:
            if not is_member(request, self.cluster_key):
                raise HTTPProblem(
                    401,
                    "cluster_auth_failed",
                    f"{HEADER} does not sign this "
                    "request with this cluster's secret (or its time is off)",
                    **{"WWW-Authenticate": 'KittenFS-Cluster realm="kittenfs"'},
                )
            return Caller(role=self.anonymous_role, member=True)  # as trusted as anyone
        return Caller(role=self.anonymous_role)

    async def _bearer(self, header: str) -> Caller:
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _bad_credential("Authorization must be 'Bearer <token>'")
        if self.admin_token is not None and secrets_match(self.admin_token, token):
            assert self._admin is not None
            return Caller(self._admin, Role.ADMIN)
        named = parse_token(token)
        if named is None:
            raise _bad_credential("the token is not a kittenFS token")
        credential = await self.credential(named[0])
        if credential is None or not secrets_match(
            secret_of(self.master_key, credential), named[1]
        ):
            raise _bad_credential("unknown or revoked credential, or a wrong secret")
        return Caller(credential.access_key, Role.named(credential.role), credential.prefix)

    async def credential(self, access_key: str) -> Credential | None:
        """Return the stored credential with this access key if it has not expired."""
        credential = await self.index.credential(access_key)
        if credential is None or credential.expired(int(time.time() * 1000)):
            return None
        return credential

    async def _link(self, request: RequestHead, key: str) -> Caller:
        query = request.query
        try:
            expires = int(query.get("kfs-expires", ""))
            exclude = tuple(int(i) for i in query.get("kfs-exclude", "").split(",") if i)
        except ValueError:
            raise HTTPProblem(403, "bad_link", "the link's parameters are garbled") from None
        link = KeyLink(
            query.get("kfs-method", ""), key, expires, query.get("kfs-credential", ""), exclude
        )
        if not self.links.check(link, query.get("kfs-signature", ""), time.time()):
            if self.links.check(link, query.get("kfs-signature", ""), float("-inf")):
                raise HTTPProblem(403, "link_expired", "the link has expired")
            raise HTTPProblem(
                403,
                "bad_link",
                "the link's signature does not match it: "
                "it was altered, or signed for another key or method",
            )
        if request.method not in (link.method, "HEAD" if link.method == "GET" else ""):
            raise HTTPProblem(
                403, "bad_link", f"the link is for {link.method}, not {request.method}"
            )
        owner = await self._owner(link.credential)
        return Caller(link.credential, owner.role, owner.prefix, link=link)

    async def _owner(self, credential: str) -> Caller:
        """Return what the credential a link was signed for may do now (revoked: nothing)."""
        if credential == ANONYMOUS:
            return Caller(role=self.anonymous_role)
        if credential == self._admin:
            return Caller(credential, Role.ADMIN)
        stored = await self.credential(credential)
        if stored is None:
            raise HTTPProblem(
                403,
                "link_revoked",
                "the credential that signed the link was revoked or has expired",
            )
        return Caller(credential, Role.named(stored.role), stored.prefix)

    def listing(self, caller: Caller, prefix: str) -> str:
        """Return the prefix a listing of ``prefix`` covers for ``caller`` (403 if none)."""
        scoped = listing_prefix(caller.prefix, prefix)
        if scoped is None:
            raise HTTPProblem(403, "forbidden", f"{caller.describe()} may not list {prefix}")
        return scoped

    def sign(
        self, caller: Caller, method: str, key: str, seconds: float, exclude: tuple[int, ...] = ()
    ) -> dict[str, str]:
        """Return the query parameters of a link that lets anyone do ``method`` on ``key``
        for ``seconds``, as ``caller``."""
        link = KeyLink(method, key, int(time.time() + seconds), caller.credential, exclude)
        return {
            "kfs-method": link.method,
            "kfs-expires": str(link.expires),
            "kfs-credential": link.credential,
            **({"kfs-exclude": ",".join(map(str, exclude))} if exclude else {}),
            "kfs-signature": self.links.sign(link),
        }


def link_url(base: str, raw_path: str, params: dict[str, str]) -> str:
    """Return ``base`` + ``raw_path`` with a link's query parameters."""
    return f"{base}{raw_path}?{urlencode(params)}"


def _bad_credential(detail: str) -> HTTPProblem:
    return HTTPProblem(
        401,
        "bad_credentials",
        detail,
        **{"WWW-Authenticate": 'Bearer realm="kittenfs", error="invalid_token"'},
    )
