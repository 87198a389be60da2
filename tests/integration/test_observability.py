"""What operators run: the Grafana dashboard and the Prometheus alert rules (deploy/) name
metrics a running cluster exposes and pass promtool (its check and the alerts' unit tests,
tests/observability/alerts-test.yml); ``--log-format json`` writes only JSON lines, whose
access lines carry the request id every response has in ``X-Request-Id``."""

import json
import os
import re
import shutil
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cluster import Cluster, MakeCluster, wait_until
from prometheus_client.parser import text_string_to_metric_families
from rawhttp import raw_request

from kittenfs.requestid import HEADER, MAX_LENGTH

ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "kittenfs-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "kittenfs-alerts.yml"
ALERT_TESTS = ROOT / "tests" / "observability" / "alerts-test.yml"
#: Labels Prometheus gives every series it scrapes, whatever the process exposes.
TARGET_LABELS = {"instance", "job"}
#: PromQL words that look like metric names.
KEYWORDS = {"and", "or", "unless", "bool", "inf", "nan"}

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
RANGE = re.compile(r"\[[^\]]*\]|\boffset\s+-?\w+|@\s*[\w.()]+")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*(\()?")
MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """Return the metric names a PromQL expression reads, each with the label names its
    matchers name (functions, aggregations, grouping labels, ranges, numbers, keywords
    and strings are not metric names)."""
    text = STRING.sub('""', expr)
    text = GROUPING.sub(" ", RANGE.sub(" ", text))
    text = NUMBER.sub(" ", text)
    found = []
    for name, matchers, call in SELECTOR.findall(text):
        if call or name.lower() in KEYWORDS:
            continue
        found.append((name, set(MATCHER.findall(matchers))))
    return found


def test_selectors_reads_metric_names_only() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route=~"k.*"}[5m]))) '
        "/ on (instance) group_left (role) b_info * 1e-9 and c offset 5m"
    )
    assert selectors(expr) == [("a_bucket", {"route"}), ("b_info", set()), ("c", set())]


def dashboard_exprs() -> list[str]:
    """Every query of every panel of the dashboard."""
    model = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in model["panels"] for t in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of the alert rules file."""
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def exposed(url: str) -> dict[str, set[str]]:
    """Return each sample name ``url``'s /metrics shows, with the label names it has."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_the_dashboard_and_alerts_name_metrics_a_cluster_exposes(shared: Cluster) -> None:
    httpx.put(f"{shared.url}/obs/scraped", content=b"v", timeout=30).raise_for_status()
    metrics: dict[str, set[str]] = {}
    for url in (shared.url, shared.nodes[0].url):
        for name, labels in exposed(url).items():
            metrics.setdefault(name, set()).update(labels)
    exprs = dashboard_exprs() + [rule["expr"] for rule in alert_rules()]
    assert len(exprs) >= 20
    for expr in exprs:
        read = selectors(expr)
        assert read, f"no metric in {expr!r}"
        for name, labels in read:
            assert name in metrics, f"{expr!r} reads {name}, which no process exposes"
            unknown = labels - metrics[name] - TARGET_LABELS
            assert not unknown, f"{expr!r} matches {name} on labels it lacks: {unknown}"


def test_the_dashboard_has_what_operators_look_at() -> None:
    text = " ".join(dashboard_exprs())
    for metric in (
        "kittenfs_requests_total",
        "kittenfs_request_seconds_bucket",
        "kittenfs_bytes_in_total",
        "kittenfs_bytes_out_total",
        "kittenfs_workers_up",
        "kittenfs_disk_free_bytes",
        "kittenfs_under_replicated_keys",
        "kittenfs_job_items_done",
        "kittenfs_cache_hits_total",
        'status=~"5.."',
    ):
        assert metric in text
    model = json.loads(DASHBOARD.read_text())
    datasources = {json.dumps(p["datasource"]) for p in model["panels"]}
    assert datasources == {json.dumps({"type": "prometheus", "uid": "${datasource}"})}
    alerts = {rule["alert"]: rule for rule in alert_rules()}
    assert set(alerts) == {
        "KittenfsWorkerDown",
        "KittenfsUnderReplicated",
        "KittenfsDiskAlmostFull",
        "KittenfsScrubFoundCorruption",
        "KittenfsMasterRestarted",
    }
    assert alerts["KittenfsUnderReplicated"]["for"] == "10m"
    assert all({"severity"} <= set(r["labels"]) for r in alerts.values())
    assert all({"summary", "description"} <= set(r["annotations"]) for r in alerts.values())


def promtool() -> str:
    """Return promtool's path; skip without it, unless KFS_REQUIRE_PROMTOOL=1 (CI)."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("KFS_REQUIRE_PROMTOOL") == "1":
            pytest.fail(
                "promtool is missing and KFS_REQUIRE_PROMTOOL=1 (apt-get install prometheus)"
            )
        pytest.skip("promtool is missing: apt-get install prometheus (scripts/setup test does)")
    return found


def run_promtool(*args: str, cwd: Path = ROOT) -> None:
    done = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_checks_the_alert_rules() -> None:
    run_promtool("check", "rules", str(ALERTS))


def test_each_alert_fires_when_it_should_and_not_otherwise() -> None:
    run_promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)


def test_the_dashboards_queries_are_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule ($__rate_interval is Grafana's)."""
    rules = [
        {"record": f"kittenfs:panel_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(dashboard_exprs())
    ]
    checked = tmp_path / "dashboard-rules.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool("check", "rules", str(checked))


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of a log, each of which must be one JSON object."""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def access_line(log: Path, request_id: str) -> dict[str, Any] | None:
    """The access line of the request with this id in ``log``, if written yet."""
    return next(
        (
            line
            for line in json_lines(log)
            if line["logger"] == "aiohttp.access" and line.get("request_id") == request_id
        ),
        None,
    )


def test_json_logs_and_request_ids(make_cluster: MakeCluster) -> None:
    flags = ["--log-format", "json", "--verbose"]
    cluster = make_cluster(workers=1, replicas=1, master_args=flags, worker_args=flags)
    master_log, worker_log = cluster.master.log, cluster.nodes[0].log
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        put = http.put("/obs/small", content=b"hello")  # aiohttp's
        assert put.status_code == 201
        got = http.get("/obs/small", headers={HEADER: "client-id.42:x"})  # the front's
        assert got.status_code == 200
        missing = http.get("/obs/missing")  # the front's 404
        assert missing.status_code == 404
        listed = http.get("/obs?list", headers={HEADER: "listing-7"})  # aiohttp's
        assert listed.status_code == 200
        # A line break in the path stays encoded in the line: no forged second line.
        broken = http.get("/obs/a%0Afake", headers={HEADER: "broken-1"})
        assert broken.status_code == 404
    assert got.headers[HEADER] == "client-id.42:x"
    assert listed.headers[HEADER] == "listing-7"
    ids = [r.headers[HEADER] for r in (put, missing)]
    assert len(set(ids)) == 2
    answered = [
        ("PUT", "/obs/small", 201, put.headers[HEADER]),
        ("GET", "/obs/small", 200, "client-id.42:x"),
        ("GET", "/obs/missing", 404, missing.headers[HEADER]),
        ("GET", "/obs?list", 200, "listing-7"),  # the raw path, query included
        ("GET", "/obs/a%0Afake", 404, "broken-1"),
    ]
    for method, path, status, request_id in answered:
        wait_until(partial(access_line, master_log, request_id), f"the line of {request_id}")
        line = access_line(master_log, request_id)
        assert line is not None
        assert (line["method"], line["path"], line["status"]) == (method, path, status)
        assert line["remote"] == "127.0.0.1" and line["duration"] >= 0 and line["bytes"] >= 0
        assert {"time", "level", "logger", "message"} <= set(line)
    # A hostile id is neither echoed nor logged: the line has the fresh id that replaced it.
    _, headers, _ = raw_request(cluster.url, "GET", "/obs/small", {HEADER: 'evil" id'}, b"")
    wait_until(lambda: access_line(master_log, headers["x-request-id"]), "the hostile's line")
    assert "evil" not in master_log.read_text()
    # The worker's own answers carry ids too, and its log is JSON throughout.
    health = httpx.get(f"{cluster.nodes[0].url}/health", timeout=10)
    wait_until(lambda: access_line(worker_log, health.headers[HEADER]), "the worker's line")
    assert any(line["logger"] == "kittenfs.worker" for line in json_lines(worker_log))


@pytest.mark.parametrize(
    "hostile",
    ["a" * (MAX_LENGTH + 1), 'quote" {"injected": 1}', "tab\there", "new<line>", ""],
)
def test_a_hostile_request_id_is_replaced_not_echoed(shared: Cluster, hostile: str) -> None:
    for path in ("/obs/hostile", "/obs?list"):  # the front's 404, aiohttp's listing
        _, headers, _ = raw_request(shared.url, "GET", path, {HEADER: hostile}, b"")
        given = headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", given), given
