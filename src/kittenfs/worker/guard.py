"""Who may ask what of a worker (docs/security.md).

- Writes, deletes, batches, listings and checks come from the cluster's own master (or a
  worker cloning this one): signed with the cluster secret, or refused with 401.
- Blob reads come from the master (signed the same way) or from a client the master sent
  here with a signed link (``kfs-expires``, ``kfs-fallback``, ``kfs-signature``); anyone may
  read with ``--public-reads``.  The link's fallback is where the worker sends the client
  back if it cannot serve the blob.
- ``/health`` and ``/metrics`` are open.

Without a cluster secret (a loopback-only cluster) everything is allowed, as before.
"""

import time
from dataclasses import dataclass

from aiohttp import web

from ..clusterauth import is_member, require_member
from ..httputil import HTTPProblem
from ..signing import ClusterKey


@dataclass(frozen=True)
class Guard:
    """One worker's access rules."""

    key: ClusterKey | None
    public_reads: bool = False

    def require_member(self, request: web.BaseRequest) -> None:
        """Raise 401 unless the request comes from a member of the cluster."""
        require_member(request, self.key)

    def is_member(self, request: web.BaseRequest) -> bool:
        """Return True if the request comes from a member of the cluster (anyone, without a
        cluster secret)."""
        return is_member(request, self.key)

    def read(self, request: web.BaseRequest, blob: str) -> str | None:
        """Return the fallback URL of a blob read's link (None if it has none) once the read
        is allowed; raise 401 (no link) or 403 (a bad or expired link) otherwise."""
        query = request.query
        fallback = query.get("kfs-fallback")
        if self.key is None:
            return fallback
        if "kfs-signature" in query:
            try:
                expires = int(query.get("kfs-expires", ""))
            except ValueError:
                raise HTTPProblem(403, "bad_link", "kfs-expires is not a time") from None
            if self.key.check_link(
                f"/blob/{blob}", expires, fallback or "", query["kfs-signature"], time.time()
            ):
                return fallback
            raise HTTPProblem(
                403,
                "bad_link",
                "the link is expired, or not signed by this "
                "cluster's master: ask the master for the key again",
            )
        if self.public_reads or is_member(request, self.key):
            return None
        raise HTTPProblem(
            401,
            "link_required",
            "blobs are served on a link from the master: "
            "GET the key from the master, which redirects here",
            **{"WWW-Authenticate": 'KittenFS-Link realm="kittenfs"'},
        )


#: A worker's access rules, in its application.
GUARD = web.AppKey("guard", Guard)
