"""Processes stopped by their PID (the local PostgreSQL and etcd servers, localpg.py and
localetcd.py): signalled, waited for, reaped if they are our children, killed if they
outstay a deadline."""

import contextlib
import os
import signal
import time


def alive(pid: int) -> bool:
    """Return True if process ``pid`` runs (a child of ours that ended is reaped: a zombie
    does not count)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(pid: int, sig: int, timeout: float) -> None:
    """Send ``sig`` to ``pid`` (SIGCONT first: a paused process cannot stop) and return once
    it is gone, killing it (SIGKILL) if it outstays ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
