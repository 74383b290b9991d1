"""deploy/compose.yaml, checked without Docker: every file it mounts or builds from exists, the
commands parse with the real `onespace` CLI, the settings are real settings, and the services
reach each other on the ports they listen on."""

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


def test_the_stack_has_gateway_emulator_prometheus_grafana(services: dict[str, Any]) -> None:
    assert set(services) == {"gateway", "bedrock", "prometheus", "grafana"}


def test_the_images_build_from_the_repository(services: dict[str, Any]) -> None:
    for name in ("gateway", "bedrock"):
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
