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
#: The master's id, made at its first start and kept in its data directory: its writes in
#: flight carry it (an index shared by masters tells whose they are by it), and a supervisor
#: (``kittenfs up``) tells its own master's ``/health`` from another's on the same port by it.
MASTER_ID_FILE = "master.id"
#: The master's key (master/access.py): credentials' secrets and signed links derive from
#: it; masters that share an index have the same one.
MASTER_KEY_FILE = "master.key"


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


def master_id(data: Path) -> str:
    """Return the id of the master whose data directory ``data`` is: the one kept in
    ``master.id``, or a new one (``m-`` and 12 hex digits), written and synced first."""
    path = data / MASTER_ID_FILE
    try:
        kept = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        kept = ""
    if kept:
        return kept
    made = f"m-{os.urandom(6).hex()}"
    write_durably(path, f"{made}\n".encode("ascii"))
    return made


def write_durably(path: Path, content: bytes, mode: int = 0o644) -> None:
    """Replace the file ``path`` with ``content``, durably: written to a temporary file,
    fsynced, renamed over ``path``, and the directory fsynced, so that a crash leaves the
    old file or the new one, whole."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
