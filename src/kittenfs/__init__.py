"""kittenFS: an actually simple distributed key value store.

The public names are the clients, their exceptions and the version.
"""

from .client import AsyncClient, Client, KeyValueMapping, ValueInfo
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
