"""kittenFS: an actually simple distributed key value store.

The public names are the clients, their exceptions and the version.  The clients are
imported on first use, so that ``import kittenfs.cli`` (the command line's start-up) does not
pay for httpx before a command needs it.
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    AccessDenied,
    BadRequest,
    Conflict,
    CorruptValue,
    KeyNotFound,
    KittenError,
    ServerError,
    Unavailable,
    ValueTooLarge,
)

if TYPE_CHECKING:
    from .client import AsyncClient, Client, KeyValueMapping, ValueInfo

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "CorruptValue",
    "KeyNotFound",
    "KeyValueMapping",
    "KittenError",
    "ServerError",
    "Unavailable",
    "ValueInfo",
    "ValueTooLarge",
    "__version__",
]

_FROM_CLIENT = frozenset({"AsyncClient", "Client", "KeyValueMapping", "ValueInfo"})


def __getattr__(name: str) -> Any:
    """Import a client name on first use."""
    if name not in _FROM_CLIENT:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import client

    value = getattr(client, name)
    globals()[name] = value
    return value
