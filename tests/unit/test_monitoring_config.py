"""The monitoring in deploy/ holds together: the alert rules pass their promtool tests (every alert fires on
a series that should page and stays quiet on one that should not), both Prometheus configs are valid and
scrape every service, and the Grafana dashboard is well-formed, its queries valid PromQL over metrics the
services really export."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics_core import Metric

import services.capture.app  # noqa: F401  (registers capture's own metrics beside the shared ones)
from shared.db.bootstrap import SERVICES
from shared.messaging.monitor import REGISTRY
from shared.settings import DEFAULT_HTTP_PORTS

ROOT = Path(__file__).parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "oms.json"
PROMETHEUS_OWN = {"up", "ALERTS"}  # series Prometheus makes itself
METRIC_NAME = re.compile(r"\boms_[a-z0-9_]+\b")


@pytest.fixture(scope="module")
def promtool() -> str:
    """Prometheus's promtool, fetched on first use (deploy/lib.sh need_promtool). Never skipped: without it the
    alert rules would go untested."""
    found = subprocess.run(["bash", "-c", f'. "{ROOT}/deploy/lib.sh" && need_promtool'], capture_output=True,
                           text=True)
    if found.returncode != 0:
        pytest.fail(f"promtool is needed for the alert rules' tests: {found.stderr.strip()}")
    return found.stdout.strip().splitlines()[-1]


def run(promtool: str, *args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def exported_names() -> set[str]:
    """The series names the services' registry exposes (a counter `x` as x_total and x_created, ...)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gauge": ("",), "summary": ("", "_count", "_sum", "_created")}
    families: list[Metric] = list(REGISTRY.collect())
    return {family.name + suffix for family in families for suffix in suffixes[family.type]}


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
            for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]


def test_the_alert_rules_fire_when_they_should_and_only_then(promtool):
    result = run(promtool, "test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not():
    cases = [case for test in yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
             for case in test["alert_rule_test"]]
    for rule in alert_rules():
        expected = [case["exp_alerts"] for case in cases if case["alertname"] == rule["alert"]]
        assert any(expected) and not all(expected), f"{rule['alert']} needs a firing and a quiet case"


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_the_prometheus_configs_are_valid_and_scrape_every_service(promtool, config):
    result = run(promtool, "check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    [job] = yaml.safe_load((PROMETHEUS / config).read_text())["scrape_configs"]
    targets = {group["labels"]["service"]: target for group in job["static_configs"] for target in group["targets"]}
    assert set(targets) == set(SERVICES)
    if config == "prometheus.yml":  # the loopback ports of `oms up`
        assert targets == {service: f"127.0.0.1:{port}" for service, port in DEFAULT_HTTP_PORTS.items()}


def test_the_alert_rules_and_dashboard_use_only_metrics_the_services_export():
    exported = exported_names() | PROMETHEUS_OWN
    queries = [rule["expr"] for rule in alert_rules()] + dashboard_queries()
    for query in queries:
        named = set(METRIC_NAME.findall(query)) | {name for name in PROMETHEUS_OWN if re.search(rf"\b{name}\b", query)}
        assert named, f"no metric in {query!r}"
        assert named <= exported, f"{query!r} names metrics no service exports: {named - exported}"


def test_the_dashboard_is_well_formed_and_its_queries_are_valid_promql(promtool, tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [datasource] = datasources["datasources"]
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"] and {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"]), panel["title"]
    as_rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": expr} for i, expr in enumerate(dashboard_queries())]}]}
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(as_rules))
    result = run(promtool, "check", "rules", "queries.yml", cwd=tmp_path)  # parses every query
    assert result.returncode == 0, result.stdout + result.stderr
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "oms.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = dict(volume.split(":")[:2] for volume in compose["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
