"""Processes a test starts from an environment of its own (as a container or a pod would
start them), each stopped at the end: SIGTERM, then SIGKILL if it lingers."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

LISTENING = re.compile(r"listening on (https?://\S+)")
#: ``kittenfs`` as this interpreter runs it.
KITTENFS = (sys.executable, "-m", "kittenfs")


class Started:
    """The processes a test started: each is stopped, then killed if it lingers."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        env: dict[str, str],
        *args: str,
        timeout: float = 30,
        command: tuple[str, ...] = KITTENFS,
    ) -> str:
        """Run ``command ARGS`` (default ``kittenfs``) with only ``env`` as its settings (no
        other KITTENFS_* variable); return the URL it bound."""
        log = self.logs / f"{name}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("KITTENFS_")}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*command, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**base, **env},
            )
        self.procs.append(proc)
        deadline = time.monotonic() + timeout
        while not (found := LISTENING.search(log.read_text(errors="replace"))):
            assert proc.poll() is None, f"{name} exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{name} did not listen:\n{log.read_text()}"
            time.sleep(0.05)
        return found.group(1)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
