"""The Kubernetes manifests of deploy/kubernetes, read as the kubelet would run them, and
moved to this machine to be run here.

A pod's environment is what the kubelet gives its container: ``fieldRef`` values (the pod's
name and namespace) filled in, then ``$(VAR)`` expanded from the variables before it.  To run
that environment on this machine (as processes, or in the image under podman on the host's
network), the cluster's DNS names and ports are swapped for loopback ones (``moved``): the
part a Service and a cluster's DNS play there.

Also a command for scripts/test-container, which prints a pod's environment moved, a
``NAME=VALUE`` line each (podman's ``--env-file``):
python tests/deploy/kube.py ROLE --pod NAME [--namespace NS] [--host NAME=ADDR ...]
[--port OLD=NEW ...]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
#: ``$(NAME)`` in a variable's value: the kubelet's expansion of an earlier variable.
REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

Doc = dict[str, Any]


def documents(names: list[str] | None = None) -> list[Doc]:
    """Every resource in the manifests (``names``: those files only; default: all but the
    kustomization)."""
    paths = [MANIFESTS / name for name in names] if names else sorted(MANIFESTS.glob("*.yaml"))
    docs: list[Doc] = []
    for path in paths:
        if path.name != "kustomization.yaml" or names:
            docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def kustomization() -> Doc:
    """The kustomization that names the resources, the image and the secrets."""
    doc: Doc = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    return doc


def find(kind: str, name: str) -> Doc:
    """The resource of ``kind`` called ``name``."""
    for doc in documents():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise LookupError(f"no {kind} {name} in {MANIFESTS}")


def statefulset(role: str) -> Doc:
    """The StatefulSet that runs ``role`` (master or worker)."""
    return find("StatefulSet", f"kittenfs-{role}")


def container(role: str) -> Doc:
    """The one container of ``role``'s pods."""
    (only,) = statefulset(role)["spec"]["template"]["spec"]["containers"]
    return dict(only)


def pod_env(role: str, pod: str, namespace: str) -> dict[str, str]:
    """The environment the kubelet gives ``role``'s container in pod ``pod``."""
    fields = {"metadata.name": pod, "metadata.namespace": namespace}
    env: dict[str, str] = {}
    for var in container(role).get("env", []):
        if "valueFrom" in var:
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[var["name"]] = REFERENCE.sub(
                lambda m: env.get(m.group(1), m.group(0)), str(var["value"])
            )
    return env


def moved(env: dict[str, str], hosts: dict[str, str], ports: dict[str, str]) -> dict[str, str]:
    """``env`` with each URL's host in ``hosts`` and port in ``ports`` swapped, and the
    listening port (KITTENFS_PORT) too."""

    def swap(match: re.Match[str]) -> str:
        host, port = match.group(2), match.group(3)
        return f"{match.group(1)}{hosts.get(host, host)}:{ports.get(port, port)}"

    out = {
        name: re.sub(r"(https?://)([^/:]+):(\d+|\{port\})", swap, value)
        for name, value in env.items()
    }
    if "KITTENFS_PORT" in out:
        out["KITTENFS_PORT"] = ports.get(out["KITTENFS_PORT"], out["KITTENFS_PORT"])
    return out


def _pairs(given: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in given)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["master", "worker"])
    parser.add_argument("--pod", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--host", action="append", default=[], help="NAME=ADDR")
    parser.add_argument("--port", action="append", default=[], help="OLD=NEW")
    args = parser.parse_args()
    env = moved(pod_env(args.role, args.pod, args.namespace), _pairs(args.host), _pairs(args.port))
    for name, value in env.items():
        print(f"{name}={value}")


if __name__ == "__main__":
    main()
