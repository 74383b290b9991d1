"""deploy/k8s, checked without a cluster: every object of every variant (base, the secured overlay,
each optional component) validates against the Kubernetes JSON schemas (kubernetes-validate,
offline), and the objects agree with each other, with the image and with the gateway's settings."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from onespace.auth.tokens import TokenTable
from onespace.cli import build_parser
from onespace.config import Settings
from onespace.rpc.health import DEPENDS_ON
from tests.deploy.dockerfile import parse
from tests.deploy.kustomize import load_documents, render
from tests.deploy.paths import DEPLOY, settings_from_env

K8S = DEPLOY / "k8s"
BASE = K8S / "base"
SECURED = K8S / "overlays" / "secured"
AUTOSCALING = K8S / "components" / "autoscaling"
OPERATOR = K8S / "components" / "prometheus-operator"
# The oldest Kubernetes still widely run, and the newest the validator knows.
VERSIONS = ("1.29", kubernetes_validate.latest_version())
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}  # CRDs: no schema offline, checked below

VARIANTS: dict[str, tuple[Path, tuple[Path, ...]]] = {
    "base": (BASE, ()),
    "secured": (SECURED, ()),
    "autoscaling": (BASE, (AUTOSCALING,)),
    "prometheus-operator": (BASE, (OPERATOR,)),
}
Doc = dict[str, Any]


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    directory, components = VARIANTS[request.param]
    return request.param, render(directory, components)


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def identity(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def pod_spec(docs: list[Doc]) -> Doc:
    spec: Doc = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    return spec


def container(docs: list[Doc]) -> Doc:
    containers = pod_spec(docs)["containers"]
    assert len(containers) == 1
    c: Doc = containers[0]
    return c


def settings(docs: list[Doc]) -> Settings:
    config = one(docs, "ConfigMap", container(docs)["envFrom"][0]["configMapRef"]["name"])
    return settings_from_env(config["data"])


def test_every_object_validates_against_the_kubernetes_schemas(variant: tuple[str, list[Doc]]) -> None:
    name, docs = variant
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(
                    f"{name}: {doc['kind']}/{doc['metadata']['name']} ({version}): {path}: {exc.message}"
                )


def test_names_are_unique(variant: tuple[str, list[Doc]]) -> None:
    _, docs = variant
    keys = [identity(d) for d in docs]
    assert len(keys) == len(set(keys))


def test_selectors_services_and_ports_agree(variant: tuple[str, list[Doc]]) -> None:
    _, docs = variant
    sts = one(docs, "StatefulSet", "onespace")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    s = settings(docs)
    assert ports == {"grpc": s.port, "metrics": s.metrics_port}
    for service in [d for d in docs if d["kind"] == "Service"]:
        assert service["spec"]["selector"].items() <= labels.items(), service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports and port["port"] == ports[port["targetPort"]]
    headless = one(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None", "a StatefulSet's serviceName must be headless"
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_one_replica_with_its_own_volume_unless_autoscaled(variant: tuple[str, list[Doc]]) -> None:
    name, docs = variant
    sts = one(docs, "StatefulSet")
    claims = {c["metadata"]["name"]: c for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    assert mounts[str(settings(docs).data_dir)] in claims, "the data directory is not on the volume claim"
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    if name == "autoscaling":
        assert "replicas" not in sts["spec"], "the HPA owns the replica count"
        target = hpas[0]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("StatefulSet", sts["metadata"]["name"])
        pods_metrics = [
            m["pods"]["metric"]["name"] for m in hpas[0]["spec"]["metrics"] if m["type"] == "Pods"
        ]
        assert pods_metrics == ["onespace_queue_depth"]
    else:
        assert sts["spec"]["replicas"] == 1
        assert not hpas


def test_hardened_pod(variant: tuple[str, list[Doc]]) -> None:
    _, docs = variant
    spec = pod_spec(docs)
    security = container(docs)["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert spec["automountServiceAccountToken"] is False
    user = parse(DEPLOY / "docker" / "Dockerfile")[1][-1].all("USER")[-1].args
    assert f"{spec['securityContext']['runAsUser']}:{spec['securityContext']['runAsGroup']}" == user
    # With a read-only root, everything the gateway writes must be a volume.
    mounts = {m["mountPath"] for m in container(docs)["volumeMounts"]}
    assert {str(settings(docs).data_dir), "/tmp"} <= mounts
    resources = container(docs)["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]


def test_args_and_image(variant: tuple[str, list[Doc]]) -> None:
    _, docs = variant
    c = container(docs)
    assert build_parser().parse_args(c["args"]).command == "serve"
    assert c["image"] == "onespace:0.1.0"


def test_graceful_stop_fits_the_termination_grace_period(variant: tuple[str, list[Doc]]) -> None:
    _, docs = variant
    command = container(docs)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    grace = pod_spec(docs)["terminationGracePeriodSeconds"]
    assert grace > float(command[1]) + settings(docs).grace_seconds + 10, "no room for the drain"


def test_probes_ask_real_health_services(variant: tuple[str, list[Doc]]) -> None:
    name, docs = variant
    c = container(docs)
    s = settings(docs)
    probes = {kind: c[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    for kind, probe in probes.items():
        if name == "secured":  # the kubelet's grpc probe cannot do TLS: the image's probe can
            command = probe["exec"]["command"]
            copied = parse(DEPLOY / "docker" / "Dockerfile")[1][-1].all("COPY")
            assert command[1] in [i.words[-1] for i in copied], f"{kind}: {command[1]} is not in the image"
            service = command[command.index("--service") + 1]
        else:
            assert probe["grpc"]["port"] == s.port, kind
            service = probe["grpc"].get("service", "")
        assert service in DEPENDS_ON, f"{kind}: no health service {service!r}"
    # Liveness must not depend on the provider: restarting does not fix Bedrock.
    live = probes["livenessProbe"]
    service = live["grpc"]["service"] if "grpc" in live else live["exec"]["command"][-1]
    assert DEPENDS_ON[service] == ()


def test_secrets_hold_what_the_settings_point_at(variant: tuple[str, list[Doc]], tmp_path: Path) -> None:
    name, docs = variant
    s = settings(docs)
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}

    def secret_file(path: str) -> str:
        parent, _, key = path.rpartition("/")
        volume = volumes[mounts[parent]]
        secret = one(docs, "Secret", volume["secret"]["secretName"])
        data = {**secret.get("stringData", {}), **secret.get("data", {})}
        assert key in data, f"{path}: the Secret has no {key}"
        return str(data[key])

    tokens = tmp_path / "tokens.toml"
    tokens.write_text(secret_file(s.auth_tokens))
    table = TokenTable.load(tokens)  # the placeholder is a valid token file that matches no token
    assert [e.digest for e in table.entries] == [bytes(32)]
    if name == "secured":
        assert not s.insecure
        for path in (s.tls_cert, s.tls_key):
            assert "REPLACE" in secret_file(path)
    else:
        assert s.insecure and not s.tls_cert


def test_operator_objects_select_the_gateway() -> None:
    docs = render(BASE, (OPERATOR,))
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selected = [
        d
        for d in docs
        if d["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()
    ]
    assert [d["metadata"]["name"] for d in selected] == ["onespace"], "scrape one Service, not both"
    port_names = {p["name"] for p in selected[0]["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    rule = one(docs, "PrometheusRule")
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"], "the PrometheusRule differs from alerts.yml"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not installed")
@pytest.mark.parametrize("variant_name", list(VARIANTS))
def test_kubectl_kustomize_renders_the_same_objects(variant_name: str, tmp_path: Path) -> None:
    directory, components = VARIANTS[variant_name]
    if components:  # a kustomization that adds the component, as a user's overlay would
        overlay = tmp_path / "overlay"
        overlay.mkdir()
        (overlay / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [os.path.relpath(directory, overlay)],
                    "components": [os.path.relpath(c, overlay) for c in components],
                }
            )
        )
        directory = overlay
    built = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr
    theirs = [d for d in yaml.safe_load_all(built.stdout) if d]
    ours = render(*VARIANTS[variant_name])
    assert sorted(theirs, key=identity) == sorted(ours, key=identity)


def test_every_manifest_file_is_used() -> None:
    """A file under deploy/k8s that no kustomization lists would never be applied."""
    listed: set[Path] = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        data = yaml.safe_load(kustomization.read_text())
        listed.add(kustomization)
        for entry in [*data.get("resources", []), *(p["path"] for p in data.get("patches", []))]:
            listed.add((kustomization.parent / entry).resolve())
    for path in K8S.rglob("*.yaml"):
        if path.resolve() not in listed and path not in listed:
            assert load_documents(path) == [], f"{path.relative_to(DEPLOY)} is listed by no kustomization"
