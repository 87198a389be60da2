"""Hostile requests, as the nemesis's ``attack`` fault sends them during a run.

Each is one of the attacks of issue 9 that once did harm (a hijacked registration, a forged
blob, hostile JSON and headers, a NaN job option).  Each must now be refused with a 4xx,
and the run must still show no lost, stale or wrong bytes.  They go only to the cluster's
own processes.
"""

import json
import os
import struct
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from ..placement import blob_id, new_version

#: An attack: given the master's URL, a worker's URL and a live blob's link, the response.
Attack = Callable[[httpx.Client, str, str, str], httpx.Response]


def _hijack_registration(http: httpx.Client, master: str, worker: str, link: str) -> httpx.Response:
    worker_id = http.get(f"{worker}/health").json()["id"]
    return http.post(
        f"{master}/_workers/register", json={"id": worker_id, "url": "http://127.0.0.1:9"}
    )


def _spoof_heartbeat(http: httpx.Client, master: str, worker: str, link: str) -> httpx.Response:
    worker_id = http.get(f"{worker}/health").json()["id"]
    return http.post(f"{master}/_workers/heartbeat", json={"id": worker_id, "stats": {}})


def _forge_blob(http: httpx.Client, master: str, worker: str, link: str) -> httpx.Response:
    path = urlsplit(link).path
    blob = path.rsplit("/", 1)[1]
    return http.put(
        f"{worker}{path}",
        content=os.urandom(1000),
        headers={"X-Kfs-Key": "%2Fforged", "X-Kfs-Version": blob.split("-")[1]},
    )


def _delete_blob(http: httpx.Client, master: str, worker: str, link: str) -> httpx.Response:
    return http.delete(f"{worker}{urlsplit(link).path}")


def _read_without_link(http: httpx.Client, master: str, worker: str, link: str) -> httpx.Response:
    return http.get(f"{worker}{urlsplit(link).path}")


def _nested_json(http: httpx.Client, master: str, worker: str, link: str) -> httpx.Response:
    return http.post(f"{master}/_jobs/gc", content=b"[" * 100_000)


def _nan_grace(http: httpx.Client, master: str, worker: str, link: str) -> httpx.Response:
    return http.post(f"{master}/_jobs/gc", content=b'{"grace": NaN}')


def _raw_key_bytes(http: httpx.Client, master: str, worker: str, link: str) -> httpx.Response:
    version = new_version()
    return http.put(
        f"{worker}/blob/{blob_id('/x', version)}",
        content=b"x",
        headers={b"X-Kfs-Key": b"\xff\xfe", b"X-Kfs-Version": version.encode()},
    )


def _oversized_batch_key(http: httpx.Client, master: str, worker: str, link: str) -> httpx.Response:
    version, key = new_version(), "/" + "k" * 70_000
    head = json.dumps(
        {
            "ops": [
                {
                    "op": "put",
                    "blob": blob_id(key, version),
                    "key": key,
                    "version": version,
                    "size": 0,
                }
            ]
        }
    ).encode()
    return http.post(f"{worker}/batch", content=struct.pack(">I", len(head)) + head)


ATTACKS: dict[str, Attack] = {
    "hijack_registration": _hijack_registration,
    "spoof_heartbeat": _spoof_heartbeat,
    "forge_blob": _forge_blob,
    "delete_blob": _delete_blob,
    "read_without_link": _read_without_link,
    "nested_json": _nested_json,
    "nan_grace": _nan_grace,
    "raw_key_bytes": _raw_key_bytes,
    "oversized_batch_key": _oversized_batch_key,
}


def launch(master: str, headers: dict[str, str], verify: object = True) -> dict[str, object]:
    """Store a victim value (as the run's own client, with ``headers``), send every attack
    once at it and at the worker the master redirects to, then read the victim back; return
    each attack's status (each must be a 4xx) and whether the victim is intact."""
    victim, key = os.urandom(100_000), f"/attack/{os.urandom(6).hex()}"
    with httpx.Client(timeout=30, verify=verify) as http:  # type: ignore[arg-type]
        try:
            stored = http.put(f"{master}{key}", content=victim, headers=headers)
            link = http.get(f"{master}{key}", headers=headers).headers["location"]
        except (httpx.HTTPError, KeyError) as exc:
            return {"skipped": f"no victim: {type(exc).__name__}: {exc}"}
        if stored.status_code != 201:
            return {"skipped": f"no victim: {stored.status_code}"}
        parts = urlsplit(link)
        worker = f"{parts.scheme}://{parts.netloc}"
        results: dict[str, object] = {}
        for name, attack in ATTACKS.items():
            try:
                results[name] = attack(http, master, worker, link).status_code
            except httpx.HTTPError as exc:
                results[name] = type(exc).__name__
        again = http.get(f"{master}{key}", params={"direct": ""}, headers=headers)
        results["victim_intact"] = again.status_code == 200 and again.content == victim
        http.delete(f"{master}{key}", headers=headers)
    return results


def refused(results: dict[str, object]) -> bool:
    """Return True if every attack got a 4xx (or no answer) and the victim is intact."""
    if "skipped" in results:
        return True
    return results.get("victim_intact") is True and all(
        not isinstance(status, int) or 400 <= status < 500
        for name, status in results.items()
        if name != "victim_intact"
    )
