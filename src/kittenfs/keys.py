"""Keys: how a request path becomes a key.

A key is the full URL path of a request, leading "/" included, percent-decoded and
valid UTF-8, at most ``MAX_KEY_BYTES`` bytes once encoded.  Keys are compared and
listed in the byte order of their UTF-8 encoding.
"""

from urllib.parse import quote, unquote_to_bytes

#: Longest key accepted, in bytes of its UTF-8 encoding.
MAX_KEY_BYTES = 1024
#: Paths the master answers itself, matched on the raw (still encoded) path.
RESERVED_PATHS = frozenset(
    {"/health", "/_cluster", "/gets", "/clear", "/metrics"}
    # The web console (master/console.py).
    | {"/ui", "/ui/", "/ui/console.js", "/ui/console.css"}
)
#: Path prefixes the master answers itself: admin routes and the seed's routes.
RESERVED_PREFIXES = ("/_", "/put/", "/get/", "/delete/")


class InvalidKey(ValueError):
    """The path does not name a valid key; the message says why."""


def key_from_raw_path(raw_path: str) -> str:
    """Return the key named by a raw (still percent-encoded) request path.

    Raise InvalidKey when the decoded bytes are not UTF-8, are empty, or are too long.
    The query string, if any, is not part of the key.
    """
    path = raw_path.split("?", 1)[0]
    return decode_key(unquote_to_bytes(path))


def decode_key(raw: bytes) -> str:
    """Return ``raw`` as a key, or raise InvalidKey."""
    if len(raw) > MAX_KEY_BYTES:
        raise InvalidKey(f"key is {len(raw)} bytes; the limit is {MAX_KEY_BYTES}")
    try:
        key = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidKey(f"key is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not key.startswith("/"):
        raise InvalidKey("key must start with '/'")
    if "\x00" in key:
        raise InvalidKey("key must not contain NUL")
    return key


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid key (as :func:`decode_key` would give), else raise
    InvalidKey: for keys that arrive already decoded, such as those in a batch manifest."""
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey("key is not valid UTF-8 (it holds a lone surrogate)") from None
    return decode_key(raw)


def encode_key(key: str) -> bytes:
    """Return the byte form of a key, as stored and ordered in the index."""
    return key.encode("utf-8")


def is_reserved(path: str) -> bool:
    """Return True if the master routes this raw path itself rather than as a key.

    A key with such a name is still reachable: percent-encode its first character
    (``/%5Fx`` is the key ``/_x``), as the Python client does.
    """
    return path in RESERVED_PATHS or path.startswith(RESERVED_PREFIXES)


def key_path(key: str) -> str:
    """Return the URL path of a key (a leading "/" is added if missing).

    Keys named like a master route (``/health``, ``/_x``, ``/put/x``...) get their first
    character percent-encoded, so they address the key and not the route; so do ``.`` and
    ``..`` segments and a leading ``//``, which URL normalisation would otherwise rewrite.
    """
    if not key.startswith("/"):
        key = "/" + key
    segments = quote(key, safe="/").split("/")
    path = "/".join(s.replace(".", "%2E") if s in (".", "..") else s for s in segments)
    if path.startswith("//"):
        path = "/%2F" + path[2:]
    if is_reserved(path):
        path = f"/%{ord(path[1]):02X}{path[2:]}"
    return path
