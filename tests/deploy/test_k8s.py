"""deploy/k8s, checked without a cluster: every object of every variant (base, the secured and
Milvus overlays, each optional component) validates against the Kubernetes JSON schemas
(kubernetes-validate, offline), and the objects agree with each other, with the image, with the
gateway's settings and, for the Milvus overlay, with the Milvus Helm values."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from onespace.auth.tokens import TokenTable
from onespace.cli import build_parser
from onespace.config import Settings
from onespace.rpc.health import DEPENDS_ON
from tests.deploy.dockerfile import parse
from tests.deploy.kustomize import load_documents, render
from tests.deploy.paths import DEPLOY, REPO, settings_from_env

K8S = DEPLOY / "k8s"
BASE = K8S / "base"
SECURED = K8S / "overlays" / "secured"
MILVUS = K8S / "overlays" / "milvus"
HELM_VALUES = DEPLOY / "helm" / "milvus-values.yaml"
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
    "milvus": (MILVUS, ()),
    "milvus-autoscaling": (MILVUS, (AUTOSCALING,)),
}
MILVUS_VARIANTS = [name for name, (directory, _) in VARIANTS.items() if directory == MILVUS]
WORKLOAD_KINDS = {"StatefulSet", "Deployment"}
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


def workload(docs: list[Doc]) -> Doc:
    """The one StatefulSet or Deployment running the gateway."""
    found = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    assert len(found) == 1, f"{[identity(d) for d in found]}: one gateway workload expected"
    return found[0]


def pod_spec(docs: list[Doc]) -> Doc:
    spec: Doc = workload(docs)["spec"]["template"]["spec"]
    return spec


def container(docs: list[Doc]) -> Doc:
    containers = pod_spec(docs)["containers"]
    assert len(containers) == 1
    c: Doc = containers[0]
    return c


def config_data(docs: list[Doc]) -> dict[str, str]:
    config = one(docs, "ConfigMap", container(docs)["envFrom"][0]["configMapRef"]["name"])
    data: dict[str, str] = config["data"]
    return data


def settings(docs: list[Doc]) -> Settings:
    return settings_from_env(config_data(docs))


def autoscaled(name: str) -> bool:
    return AUTOSCALING in VARIANTS[name][1]


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
    w = workload(docs)
    labels = w["spec"]["template"]["metadata"]["labels"]
    assert w["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    s = settings(docs)
    assert ports == {"grpc": s.port, "metrics": s.metrics_port}
    for service in [d for d in docs if d["kind"] == "Service"]:
        assert service["spec"]["selector"].items() <= labels.items(), service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports and port["port"] == ports[port["targetPort"]]
    if w["kind"] == "StatefulSet":
        headless = one(docs, "Service", w["spec"]["serviceName"])
        assert headless["spec"]["clusterIP"] == "None", "a StatefulSet's serviceName must be headless"
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_replicas_and_volumes_fit_the_store(variant: tuple[str, list[Doc]]) -> None:
    """Embedded: one StatefulSet replica, the data directory on its volume claim. Milvus: a
    Deployment of three with no volume for data. Either way the autoscaling component's HPA
    targets the workload there is and owns its replica count."""
    name, docs = variant
    w = workload(docs)
    s = settings(docs)
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    if s.store == "embedded":
        assert w["kind"] == "StatefulSet"
        claims = {c["metadata"]["name"]: c for c in w["spec"]["volumeClaimTemplates"]}
        assert mounts[str(s.data_dir)] in claims, "the data directory is not on the volume claim"
    else:
        assert w["kind"] == "Deployment"
        assert "ONESPACE_DATA_DIR" not in config_data(docs), "the Milvus store has no data directory"
        assert str(s.data_dir) not in mounts
        for volume in pod_spec(docs)["volumes"]:
            assert not {"persistentVolumeClaim", "ephemeral", "hostPath"} & set(volume), volume["name"]
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    if autoscaled(name):
        assert "replicas" not in w["spec"], "the HPA owns the replica count"
        target = hpas[0]["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"], target["name"]) == (
            w["apiVersion"],
            w["kind"],
            w["metadata"]["name"],
        )
        pods_metrics = [
            m["pods"]["metric"]["name"] for m in hpas[0]["spec"]["metrics"] if m["type"] == "Pods"
        ]
        assert pods_metrics == ["onespace_queue_depth"]
    else:
        assert w["spec"]["replicas"] == (1 if s.store == "embedded" else 3)
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
    # With a read-only root, everything the gateway writes must be a volume (the Milvus store
    # writes no files: tests/deploy/test_k8s_milvus_runtime.py runs it without a data directory).
    mounts = {m["mountPath"] for m in container(docs)["volumeMounts"]}
    s = settings(docs)
    assert {"/tmp", *([str(s.data_dir)] if s.store == "embedded" else [])} <= mounts
    resources = container(docs)["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]


def test_args_and_image(variant: tuple[str, list[Doc]]) -> None:
    _, docs = variant
    c = container(docs)
    assert build_parser().parse_args(c["args"]).command == "serve"
    # The Milvus store needs pymilvus: the image built with the `milvus` extra (test below).
    assert c["image"] == ("onespace:0.1.0-milvus" if settings(docs).store == "milvus" else "onespace:0.1.0")


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
    services = {}
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
        services[kind] = service
    # Liveness must not depend on the provider or Milvus: restarting fixes neither.
    assert DEPENDS_ON[services["livenessProbe"]] == ()
    # One replica stays in the Service while searches work; interchangeable replicas leave it
    # when they cannot serve everything, so the others take their calls.
    interchangeable = s.store == "milvus" or autoscaled(name)
    assert services["readinessProbe"] == ("" if interchangeable else "onespace.v1.SearchService")


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
    if s.store == "milvus":  # a placeholder `user:password`, as the Milvus token file holds
        user, _, password = secret_file(s.milvus_token_file).strip().partition(":")
        assert user and "REPLACE" in password
    else:
        assert not s.milvus_token_file


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


@pytest.mark.parametrize("variant_name", MILVUS_VARIANTS)
def test_milvus_settings_reach_the_helm_charts_service(variant_name: str) -> None:
    """ONESPACE_MILVUS_URI names the Service the Milvus Helm chart makes from
    deploy/helm/milvus-values.yaml, and Milvus checks the token the gateway sends."""
    s = settings(render(*VARIANTS[variant_name]))
    values = yaml.safe_load(HELM_VALUES.read_text())
    url = urlsplit(s.milvus_uri)
    assert url.scheme == "http" and not url.path.strip("/")
    # The chart names its Service after fullnameOverride (templates/service.yaml, _helpers.tpl).
    assert (url.hostname, url.port) == (values["fullnameOverride"], values["service"]["port"])
    assert values["service"]["type"] == "ClusterIP"
    milvus_config = yaml.safe_load(values["extraConfigFiles"]["user.yaml"])
    assert milvus_config["common"]["security"]["authorizationEnabled"] is True
    assert s.milvus_token_file and s.milvus_database
    # Replicas behind a load balancer: a write acked by one is seen by a read on any other.
    assert s.milvus_consistency == "Strong"


@pytest.mark.parametrize("variant_name", MILVUS_VARIANTS)
def test_stateless_replicas_spread_over_nodes_and_survive_a_drain(variant_name: str) -> None:
    docs = render(*VARIANTS[variant_name])
    w = workload(docs)
    labels = w["spec"]["template"]["metadata"]["labels"]
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    least = hpas[0]["spec"]["minReplicas"] if hpas else w["spec"]["replicas"]
    assert least >= 2
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    if "maxUnavailable" in pdb:
        assert pdb["maxUnavailable"] == 1, "one pod down at a time"
    else:
        assert 2 <= pdb["minAvailable"] < least, "a drain must be able to evict, and leave two"
    if not hpas:
        assert w["spec"]["replicas"] - pdb.get("maxUnavailable", 0) >= 2
    assert w["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "a rollout keeps capacity"
    spread = pod_spec(docs)["topologySpreadConstraints"]
    by_key = {c["topologyKey"]: c for c in spread}
    nodes = by_key["kubernetes.io/hostname"]
    assert nodes["whenUnsatisfiable"] == "DoNotSchedule" and nodes["maxSkew"] == 1
    for constraint in spread:  # each counts exactly this workload's pods
        assert constraint["labelSelector"]["matchLabels"] == w["spec"]["selector"]["matchLabels"]
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
        assert constraint.get("matchLabelKeys", []) == ["pod-template-hash"]  # set on a Deployment's pods


def test_the_milvus_pod_is_the_base_pod_but_for_the_store() -> None:
    """deployment.yaml repeats the base StatefulSet's pod (Kustomize cannot turn one kind into
    another): apart from what the Milvus store changes, the two must not drift apart."""

    def comparable(docs: list[Doc], leave_out: set[str]) -> Doc:
        template: Doc = copy.deepcopy(workload(docs)["spec"]["template"])
        spec, c = template["spec"], template["spec"]["containers"][0]
        spec.pop("topologySpreadConstraints", None)
        for key in ("image", "resources"):
            c.pop(key)
        c["readinessProbe"]["grpc"].pop("service", None)
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] not in leave_out]
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] not in leave_out]
        return template

    assert comparable(render(BASE), {"data"}) == comparable(render(MILVUS), {"milvus"})


def test_the_milvus_image_is_built_with_the_milvus_extra() -> None:
    """overlays/milvus runs onespace:<version>-milvus; the Dockerfile builds it with
    `--build-arg EXTRAS=milvus` (compose.yaml's gateway-milvus says so), and that extra is the
    one that brings pymilvus."""
    image = container(render(MILVUS))["image"]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["gateway-milvus"]
    assert compose["image"] == image
    extras = compose["build"]["args"]["EXTRAS"]
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("pymilvus") for extra in extras.split(",") for r in optional[extra])
    builder = parse(DEPLOY / "docker" / "Dockerfile")[1][0]
    assert [i.args.partition("=")[0] for i in builder.all("ARG")] == ["EXTRAS"]
    assert any("${EXTRAS:+[$EXTRAS]}" in i.args for i in builder.all("RUN")), "EXTRAS is not installed"


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
