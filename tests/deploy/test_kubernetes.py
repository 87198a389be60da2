"""The Kubernetes manifests (deploy/kubernetes): valid resources of the Kubernetes API, that
name only the image, ports, variables, flags, secrets and routes that exist, and whose pods,
run here with the environment the kubelet would give them, make a working cluster.

No Kubernetes cluster runs here.  The pods' environment is moved to loopback (kube.moved:
the cluster's DNS names and ports become 127.0.0.1 and free ports) and run through the
image's own entrypoint (container/entrypoint.sh); scripts/test-container runs the same in
the image under podman."""

import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
from kube import MANIFESTS, container, documents, find, kustomization, moved, pod_env
from started import Started

from kittenfs.cluster import free_port_block
from kittenfs.config import MasterConfig, WorkerConfig
from kittenfs.settings import options

ROOT = MANIFESTS.parents[1]
ENTRYPOINT = ROOT / "container" / "entrypoint.sh"
#: The Kubernetes version the resources are checked against.
KUBERNETES = "1.30.0"
#: Variables only the image's entrypoint reads (docs/deploy.md).
IMAGE_ONLY = {"KITTENFS_ROLE", "KITTENFS_ADMIN_TOKEN_FILE", "KITTENFS_SLOTS"}
CONFIGS = {"master": MasterConfig, "worker": WorkerConfig}
NAMESPACE = "storage"


def test_every_resource_is_valid_for_the_kubernetes_api() -> None:
    checked = 0
    for doc in documents():
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # the Prometheus Operator's kind: test_the_monitor_scrapes_both_roles
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        checked += 1
    assert checked >= 5


def test_the_kustomization_names_every_manifest_and_the_secrets_the_pods_mount() -> None:
    kust = kustomization()
    listed = set(kust["resources"])
    files = {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    # The monitor needs the operator's CRDs: an opt-in the kustomization says how to make.
    assert listed == files - {"servicemonitor.yaml"}
    (generated,) = kust["secretGenerator"]
    keys = {item.split("=", 1)[0] for item in generated["files"]}
    for role in CONFIGS:
        pod = find("StatefulSet", f"kittenfs-{role}")["spec"]["template"]["spec"]
        for volume in pod["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] == generated["name"]
                assert {item["key"] for item in volume["secret"]["items"]} <= keys


@pytest.mark.parametrize("role", CONFIGS)
def test_containers_name_the_image_and_settings_that_exist(role: str) -> None:
    spec = container(role)
    images = {image["name"] for image in kustomization()["images"]}
    assert spec["image"] in images
    assert spec["args"] == [role]
    settable = {name for option in options(CONFIGS[role]) for name in option.env} | IMAGE_ONLY
    for var in spec["env"]:
        if var["name"].startswith("KITTENFS_"):
            assert var["name"] in settable, f"{role}: {var['name']} is no setting"
        else:  # the pod's own name and namespace, for the URLs built from them
            assert var["valueFrom"]["fieldRef"]["fieldPath"] in {
                "metadata.name",
                "metadata.namespace",
            }


@pytest.mark.parametrize("role", CONFIGS)
def test_ports_probes_and_services_agree(role: str) -> None:
    spec = container(role)
    env = pod_env(role, f"kittenfs-{role}-0", NAMESPACE)
    (port,) = spec["ports"]
    assert str(port["containerPort"]) == env["KITTENFS_PORT"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert spec[probe]["httpGet"] == {"path": "/health", "port": port["name"]}
    service = find("Service", f"kittenfs-{role}")
    labels = find("StatefulSet", f"kittenfs-{role}")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]
    assert (
        find("StatefulSet", f"kittenfs-{role}")["spec"]["serviceName"]
        == service["metadata"]["name"]
    )


@pytest.mark.parametrize("role", CONFIGS)
def test_secret_files_are_where_the_secret_is_mounted(role: str) -> None:
    spec = container(role)
    pod = find("StatefulSet", f"kittenfs-{role}")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounted: set[str] = set()
    for mount in spec["volumeMounts"]:
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret:
            assert mount["readOnly"] is True
            mounted |= {f"{mount['mountPath']}/{item['path']}" for item in secret["items"]}
    files = {var["value"] for var in spec["env"] if var["name"].endswith("_FILE")}
    assert files and files <= mounted
    assert "admin.token" in str(mounted) if role == "master" else "admin.token" not in str(mounted)


def test_the_disruption_budget_and_the_monitor_select_their_pods() -> None:
    worker = find("StatefulSet", "kittenfs-worker")["spec"]["template"]["metadata"]["labels"]
    budget = find("PodDisruptionBudget", "kittenfs-worker")["spec"]
    assert budget["selector"]["matchLabels"].items() <= worker.items()
    assert budget["maxUnavailable"] == 1


def test_the_monitor_scrapes_both_roles() -> None:
    monitors = documents(["servicemonitor.yaml"])
    assert {m["kind"] for m in monitors} == {"ServiceMonitor"}
    for role in CONFIGS:
        (monitor,) = (m for m in monitors if m["metadata"]["name"] == f"kittenfs-{role}")
        service = find("Service", f"kittenfs-{role}")
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        # The master's metrics need a reader's credential (docs/security.md); a worker's are open.
        assert ("authorization" in endpoint) == (role == "master")


# --- the pods, run here -----------------------------------------------------------------


class Pods:
    """Runs pods' containers here, through the image's entrypoint, with the environment the
    manifests give them, moved to loopback."""

    def __init__(self, root: Path, started: Started) -> None:
        self.root = root
        self.started = started
        self.secrets = root / "secrets"
        self.secrets.mkdir()
        self.admin_token = secrets.token_urlsafe(32)
        (self.secrets / "cluster.secret").write_text(secrets.token_urlsafe(32) + "\n")
        (self.secrets / "admin.token").write_text(self.admin_token + "\n")
        ports = free_port_block(4)
        self.ports = {"3000": str(ports), "3001": str(ports + 1)}
        self.hosts = {f"kittenfs-master.{NAMESPACE}.svc": "127.0.0.1"}

    def run(self, role: str, ordinal: int) -> str:
        """Start pod ``kittenfs-ROLE-ORDINAL`` (its own data volume); return its URL."""
        pod = f"kittenfs-{role}-{ordinal}"
        hosts = {**self.hosts, f"{pod}.kittenfs-worker.{NAMESPACE}.svc": "127.0.0.1"}
        ports = dict(self.ports)
        if role == "worker":  # each worker pod has the port to itself; here they share a host
            ports["3001"] = str(int(self.ports["3001"]) + ordinal)
        env = moved(pod_env(role, pod, NAMESPACE), hosts, ports)
        for name, value in env.items():  # the secret volume, mounted here
            if name.endswith("_FILE"):
                env[name] = str(self.secrets / Path(value).name)
        env |= {
            "KITTENFS_HOST": "127.0.0.1",  # the image listens on 0.0.0.0; tests on loopback
            "KITTENFS_DATA": str(self.root / pod),  # the pod's volume (the image's /data)
            "TMPDIR": str(self.root),  # the pod's /tmp, where the entrypoint writes a file
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        return self.started.start(pod, env, *container(role)["args"], command=(str(ENTRYPOINT),))


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[Pods]:
    started = Started(tmp_path)
    yield Pods(tmp_path, started)
    started.stop()


def wait_for(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Wait until ``check()`` holds, for ``seconds`` at most (a busy machine: generous)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not {what} in {seconds} s"
        time.sleep(0.1)


def test_the_pods_make_a_cluster_with_the_manifests_environment(pods: Pods) -> None:
    master = pods.run("master", 0)
    replicas = int(pod_env("master", "kittenfs-master-0", NAMESPACE)["KITTENFS_REPLICAS"])
    workers = [pods.run("worker", ordinal) for ordinal in range(replicas)]
    auth = {"Authorization": f"Bearer {pods.admin_token}"}
    for url in [master, *workers]:  # the probes' route answers
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    assert httpx.get(f"{master}/_cluster", timeout=10).status_code == 401  # auth is on

    def all_up() -> bool:
        cluster = httpx.get(f"{master}/_cluster", headers=auth, timeout=10).json()
        up: int = sum(w["state"] == "up" for w in cluster["workers"])
        return up == replicas

    wait_for(all_up, f"{replicas} workers up")
    advertised = {w["url"] for w in httpx.get(f"{master}/_cluster", headers=auth).json()["workers"]}
    assert advertised == set(workers)  # each worker advertises its pod's own name, moved here
    value = os.urandom(3 * 1024 * 1024)
    assert (
        httpx.put(f"{master}/k8s/value", content=value, headers=auth, timeout=30).status_code == 201
    )
    answer = httpx.get(f"{master}/k8s/value", headers=auth, timeout=30)
    assert answer.status_code == 302 and answer.headers["location"].startswith(tuple(workers))
    assert (
        httpx.get(f"{master}/k8s/value", headers=auth, follow_redirects=True, timeout=30).content
        == value
    )
