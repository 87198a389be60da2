"""A data directory belongs to one process at a time.

A second master or worker started on a directory in use would share its LevelDB with the
first (LevelDB refuses that, but only once the second has already cleared the first one's
uploads in progress), so each process claims its directory first, before it touches
anything in it, with an exclusive lock on ``<data>/kittenfs.lock`` that the kernel drops when
the process ends, however it ends.
"""

import errno
import fcntl
import os
from pathlib import Path

from .config import ConfigError

LOCK_FILE = "kittenfs.lock"
#: The master's id, written in its data directory once it listens, so that a supervisor
#: (``kittenfs up``) can tell its own master's ``/health`` from another's on the same port.
MASTER_ID_FILE = "master.id"


class DataDirInUse(ConfigError):
    """Another process holds the data directory."""


def claim(data: Path) -> int:
    """Lock ``data`` (created if missing) for this process; return the lock's descriptor,
    which must stay open as long as the process uses the directory.

    Raise DataDirInUse, naming the holder's PID, if another process holds it.
    """
    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(data / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        raise DataDirInUse(
            f"--data {data}: in use by another kittenfs process (pid {holder}); "
            "stop it first, or give this one a directory of its own"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd
