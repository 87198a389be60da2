"""Clients that pin their own versions of botocore or bring large wheels (the AWS CLI, s3fs
with pandas and pyarrow) each live in a venv of their own beside the test venv: made once,
under the test venv's prefix, and reused by later runs."""

import subprocess
import sys
import venv
from pathlib import Path

SIDE = Path(sys.prefix) / "side"


def side_venv(name: str, *requirements: str) -> Path:
    """Return the bin directory of venv ``name`` with ``requirements`` installed."""
    root = SIDE / name
    done = root / "installed.txt"
    wanted = "\n".join(requirements)
    if not done.exists() or done.read_text() != wanted:
        venv.create(root, with_pip=True, clear=True)
        subprocess.run(
            [root / "bin" / "pip", "install", "-q", *requirements], check=True, timeout=900
        )
        done.write_text(wanted)
    return root / "bin"
