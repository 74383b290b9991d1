"""Write deploy/k8s/components/prometheus-operator/prometheusrule.yaml from alerts.yml.

The PrometheusRule must carry the same groups as alerts.yml (tests/deploy compares them); run
this after changing alerts.yml: `python deploy/prometheus/to_prometheusrule.py`.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE.parent / "k8s" / "components" / "prometheus-operator" / "prometheusrule.yaml"
HEADER = """\
# Generated from deploy/prometheus/alerts.yml by deploy/prometheus/to_prometheusrule.py: edit
# alerts.yml and run it (tests/deploy compares the two); the comments on each rule are there.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: onespace
  labels:
    app.kubernetes.io/name: onespace
    app.kubernetes.io/component: gateway
spec:
"""


def main() -> None:
    lines = (HERE / "alerts.yml").read_text().splitlines()
    start = lines.index("groups:")
    body = [line for line in lines[start:] if not line.lstrip().startswith("#")]
    TARGET.write_text(HEADER + "\n".join(f"  {line}" if line else "" for line in body) + "\n")


if __name__ == "__main__":
    main()
