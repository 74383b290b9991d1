"""deploy/prometheus: `promtool check config`, `promtool check rules` and the rule unit tests
(`promtool test rules alerts_test.yml`), and every metric the rules name is one the gateway exports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy.exported import exported_names, metric_names
from tests.deploy.paths import DEPLOY

PROMETHEUS = DEPLOY / "prometheus"


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    assert binary is not None, "promtool comes from .ci/setup (Debian's prometheus package)"
    done = subprocess.run([binary, *args], capture_output=True, text=True, cwd=PROMETHEUS, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_the_config_is_valid() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")


def test_the_rules_are_valid() -> None:
    out = promtool("check", "rules", "alerts.yml")
    rules = [r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    assert f"SUCCESS: {len(rules)} rules found" in out


def test_the_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == fired, f"no firing test for {sorted(alerts - fired)}"


async def test_every_metric_in_the_rules_is_exported(tmp_path: Path) -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    exported = await exported_names(tmp_path)
    for group in rules["groups"]:
        for rule in group["rules"]:
            unknown = metric_names(rule["expr"]) - exported
            assert not unknown, f"{rule['alert']}: the gateway exports no {sorted(unknown)}"
