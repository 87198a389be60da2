"""Separate hosts on one machine: a network namespace per process, with its own address,
joined by veth pairs to a bridge, as machines on one switch.

A link can be cut (its cable pulled: packets are dropped, connections stall until their
timeouts) and restored.  Building namespaces needs root and iproute2; :func:`unavailable`
says why they cannot be built, and nothing here touches any address but the namespaces'.
"""

import os
import random
import shutil
import subprocess


def unavailable() -> str | None:
    """Return why namespaces cannot be built here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2 (the ip command)"
    return None


def ip(*args: str) -> None:
    """Run one ``ip`` command; raise CalledProcessError (with its stderr) if it fails."""
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Network:
    """A bridge in the caller's namespace (address ``<net>.1``) and ``hosts`` namespaces,
    host ``h`` at ``<net>.<10 + h>``; the caller reaches every host through the bridge."""

    def __init__(self, hosts: int) -> None:
        self.tag = os.urandom(2).hex()
        self.net = f"10.{random.randint(100, 199)}.{random.randint(0, 250)}"
        self.spaces: list[str] = []
        try:
            self._build(hosts)
        except BaseException:
            self.teardown()
            raise

    @property
    def bridge(self) -> str:
        return f"kb{self.tag}"

    def address(self, host: int) -> str:
        return f"{self.net}.{10 + host}"

    def link(self, host: int) -> str:
        """The bridge's end of host ``host``'s cable."""
        return f"kv{self.tag}{host}"

    def prefix(self, host: int) -> list[str]:
        """The command prefix that runs a program on host ``host`` (``ip netns exec`` execs
        it, so the program keeps the PID the caller sees)."""
        return ["ip", "netns", "exec", self.spaces[host]]

    def cut(self, host: int) -> None:
        """Pull host ``host``'s cable: nothing reaches it or leaves it until restored."""
        ip("link", "set", self.link(host), "down")

    def restore(self, host: int) -> None:
        ip("link", "set", self.link(host), "up")

    def blackhole(self, host: int, target: int, on: bool = True) -> None:
        """Drop (or, with ``on`` False, stop dropping) what ``host`` sends to ``target`` only."""
        ip(
            "netns",
            "exec",
            self.spaces[host],
            "ip",
            "route",
            "add" if on else "del",
            "blackhole",
            f"{self.address(target)}/32",
        )

    def teardown(self) -> None:
        """Delete every namespace and the bridge (their veth pairs go with them)."""
        for space in self.spaces:
            subprocess.run(["ip", "netns", "del", space], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        self.spaces.clear()

    def _build(self, hosts: int) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.net}.1/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host in range(hosts):
            space, peer = f"kfs-{self.tag}-{host}", f"kp{self.tag}{host}"
            ip("netns", "add", space)
            self.spaces.append(space)
            ip("link", "add", self.link(host), "type", "veth", "peer", "name", peer)
            ip("link", "set", peer, "netns", space)
            ip("link", "set", self.link(host), "master", self.bridge)
            ip("link", "set", self.link(host), "up")
            inside = ["netns", "exec", space, "ip"]
            ip(*inside, "link", "set", "lo", "up")
            ip(*inside, "addr", "add", f"{self.address(host)}/24", "dev", peer)
            ip(*inside, "link", "set", peer, "up")
