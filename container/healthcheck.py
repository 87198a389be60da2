#!/opt/kittenfs/bin/python3
"""The image's HEALTHCHECK: exit 0 if the kittenfs of this container answers GET /health
with 200, else 1. The entrypoint writes the URL (it knows the worker's slot and port)."""

import os
import ssl
import sys
import urllib.request
from pathlib import Path

#: Written by kittenfs-entrypoint before it starts kittenfs (in $TMPDIR, /tmp by default).
URL_FILE = Path(os.environ.get("TMPDIR") or "/tmp") / "kittenfs-health-url"


def main() -> int:
    """Return 0 if /health answers 200 within 4 s, else print why and return 1."""
    try:
        url = URL_FILE.read_text().strip()
        # Liveness of our own process on loopback: its certificate names the host, not this.
        context = ssl._create_unverified_context() if url.startswith("https:") else None
        with urllib.request.urlopen(url, timeout=4, context=context) as response:
            return 0 if response.status == 200 else 1
    except (OSError, ValueError) as exc:
        print(f"kittenfs-healthcheck: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
