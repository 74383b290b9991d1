"""deploy/compose.yaml, checked without Docker: every file it mounts or builds from exists, the
commands parse with the real `onespace` CLI, the settings are real settings, and the services
reach each other on the ports they listen on (the `milvus` profile's gateway, Milvus, etcd and
MinIO too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from onespace.cli import build_parser
from tests.deploy.dockerfile import parse
from tests.deploy.paths import DEPLOY, settings_from_env

COMPOSE = DEPLOY / "compose.yaml"
DEFAULT = {"gateway", "bedrock", "jaeger", "prometheus", "grafana"}
MILVUS_PROFILE = {"gateway-milvus", "milvus", "etcd", "minio"}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    return dict(data["services"])


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path, for the bind mounts (named volumes left out)."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out[target] = (COMPOSE.parent / source).resolve()
    return out


def _image_env(service: dict[str, Any]) -> dict[str, str]:
    """The environment the gateway container sees: the image's ENV, then compose's."""
    build = service["build"]
    dockerfile = (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve()
    return {**parse(dockerfile)[1][-1].env(), **{k: str(v) for k, v in service["environment"].items()}}


def _profile(services: dict[str, Any], profile: str | None) -> set[str]:
    """The services `docker compose --profile <profile> up` adds; None: those `up` always starts."""
    return {name for name, s in services.items() if s.get("profiles", [None]) == [profile]}


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


def test_the_stack_has_gateway_emulator_jaeger_prometheus_grafana(services: dict[str, Any]) -> None:
    assert _profile(services, None) == DEFAULT
    assert _profile(services, "milvus") == MILVUS_PROFILE
    assert set(services) == DEFAULT | MILVUS_PROFILE
    # `up` without the profile must not need its services (compose refuses a dependency on one).
    for name in DEFAULT:
        assert not MILVUS_PROFILE & set(services[name].get("depends_on", [])), name


def test_the_images_build_from_the_repository(services: dict[str, Any]) -> None:
    for name in ("gateway", "bedrock", "gateway-milvus"):
        build = services[name]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert (context / "pyproject.toml").is_file(), f"{name}: the build context is not the repository root"
        assert (context / build["dockerfile"]).is_file()


def test_every_mounted_file_exists(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for target, source in _bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"


def test_commands_parse_with_the_onespace_cli(services: dict[str, Any]) -> None:
    parser = build_parser()
    assert parser.parse_args(services["gateway"]["command"]).command == "serve"
    emulator = parser.parse_args(services["bedrock"]["command"])
    assert emulator.command == "emulate-bedrock"
    assert emulator.host == "0.0.0.0"


def test_the_gateway_reaches_the_emulator(services: dict[str, Any]) -> None:
    settings = settings_from_env(_image_env(services["gateway"]))
    assert settings.provider == "bedrock"
    url = urlsplit(settings.bedrock_endpoint_url)
    emulator = build_parser().parse_args(services["bedrock"]["command"])
    assert (url.hostname, url.port) == ("bedrock", emulator.port)
    assert services["gateway"]["depends_on"]["bedrock"]["condition"] == "service_healthy"
    check = " ".join(services["bedrock"]["healthcheck"]["test"])
    assert f":{emulator.port}/" in check, "the emulator's healthcheck asks another port"


def test_the_gateway_sends_its_traces_to_jaeger(services: dict[str, Any]) -> None:
    env = _image_env(services["gateway"])
    settings = settings_from_env(env)
    assert settings.tracing == "otlp"
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.hostname, endpoint.port) == ("jaeger", 4317)  # Jaeger's OTLP/gRPC receiver
    assert env["OTEL_EXPORTER_OTLP_INSECURE"] == "true" and endpoint.scheme == "http"
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert "jaeger" in services["gateway"]["depends_on"]
    # the image has the extra that --tracing otlp needs (its default EXTRAS)
    builder = parse(COMPOSE.parent / "docker" / "Dockerfile")[1][0]
    (extras,) = [i.args for i in builder.all("ARG")]
    assert "otel" in extras.partition("=")[2].strip('"').split(",")


def test_the_gateway_settings_are_real_and_its_stop_grace_covers_the_drain(services: dict[str, Any]) -> None:
    gateway = services["gateway"]
    settings = settings_from_env(_image_env(gateway))
    assert settings.insecure, "no TLS or tokens in this stack: the gateway refuses 0.0.0.0 without it"
    assert gateway["stop_grace_period"].endswith("s")
    assert float(gateway["stop_grace_period"][:-1]) > settings.grace_seconds
    published = {int(p.rsplit(":", 1)[1]) for p in gateway["ports"]}
    assert published == {settings.port, settings.metrics_port}


def test_ports_are_published_on_loopback_only(services: dict[str, Any]) -> None:
    host_ports = []
    for name, service in services.items():
        for mapping in service.get("ports", []):
            host, host_port, _ = mapping.split(":")
            assert host == "127.0.0.1", f"{name} publishes {mapping} on every address"
            host_ports.append(host_port)
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"


def test_prometheus_scrapes_the_gateway_and_loads_the_rules(services: dict[str, Any]) -> None:
    mounts = _bind_mounts(services["prometheus"])
    config_target = next(
        a[len("--config.file=") :] for a in services["prometheus"]["command"] if "config.file" in a
    )
    config_path = mounts[config_target]
    config = yaml.safe_load(config_path.read_text())
    settings = settings_from_env(_image_env(services["gateway"]))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for c in jobs["onespace"]["static_configs"] for t in c["targets"]]
    assert targets == [f"gateway:{settings.metrics_port}"]
    for rule_file in config["rule_files"]:  # relative to the config file, inside the container
        in_container = str(Path(config_target).parent / rule_file)
        assert in_container in mounts, f"{rule_file} is not mounted next to the config"
        assert mounts[in_container] == (DEPLOY / "prometheus" / rule_file).resolve()


def test_grafana_provisions_the_datasource_and_the_dashboard(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    mounts = _bind_mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    url = urlsplit(datasources["datasources"][0]["url"])
    prometheus_ports = {int(p.rsplit(":", 1)[1]) for p in services["prometheus"]["ports"]}
    assert url.hostname == "prometheus" and url.port in prometheus_ports
    providers = yaml.safe_load((provisioning / "dashboards" / "onespace.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    assert path in mounts, "the dashboard provider reads a directory that is not mounted"
    assert (mounts[path] / "onespace.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/onespace.json"


def test_the_milvus_gateway_reaches_milvus(services: dict[str, Any]) -> None:
    gateway = services["gateway-milvus"]
    settings = settings_from_env(_image_env(gateway))
    assert settings.store == "milvus" and settings.insecure and settings.provider == "bedrock"
    url = urlsplit(settings.milvus_uri)
    assert url.scheme == "http" and url.hostname == "milvus"
    milvus_ports = {_address(p)[1] for p in services["milvus"]["ports"]}  # the container side
    assert url.port in milvus_ports
    assert gateway["depends_on"]["milvus"]["condition"] == "service_healthy"
    assert services["milvus"]["healthcheck"]["test"][0] == "CMD"
    assert urlsplit(settings.bedrock_endpoint_url).hostname == "bedrock"
    published = {int(p.split(":")[-1]) for p in gateway["ports"]}
    assert published == {settings.port, settings.metrics_port}
    assert float(gateway["stop_grace_period"][:-1]) > settings.grace_seconds
    assert not any(v.split(":")[1] == str(settings.data_dir) for v in gateway.get("volumes", []))


def test_milvus_reaches_etcd_and_minio(services: dict[str, Any]) -> None:
    """Milvus standalone needs etcd (metadata) and MinIO (segments, and the woodpecker log)."""
    env = services["milvus"]["environment"]
    etcd_host, etcd_port = _address(env["ETCD_ENDPOINTS"])
    etcd = services[etcd_host]["command"]
    listen = next(a.partition("=")[2] for a in etcd if a.startswith("--listen-client-urls="))
    assert urlsplit(listen).port == etcd_port
    advertised = next(a.partition("=")[2] for a in etcd if a.startswith("--advertise-client-urls="))
    assert _address(urlsplit(advertised).netloc) == (etcd_host, etcd_port)
    minio_host, minio_port = _address(env["MINIO_ADDRESS"])
    minio = services[minio_host]["command"]
    assert minio[:2] == ["minio", "server"]
    assert _address(minio[minio.index("--address") + 1])[1] == minio_port
    assert set(services["milvus"]["depends_on"]) == {etcd_host, minio_host}


def test_milvus_is_the_version_the_helm_values_pin(services: dict[str, Any]) -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "milvus-values.yaml").read_text())
    image, _, tag = services["milvus"]["image"].partition(":")
    assert image == "milvusdb/milvus" and tag == values["image"]["all"]["tag"]
