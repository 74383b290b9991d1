"""deploy/docker/Dockerfile and .dockerignore, checked without Docker (no daemon on CI): the stages,
the unprivileged user, the health check, the ports and settings, and that everything the build
COPYs exists and is in the build context."""

from __future__ import annotations

import os
import tomllib

import pytest

from onespace.cli import build_parser
from tests.deploy.dockerfile import Instruction, Stage, parse
from tests.deploy.dockerignore import DockerIgnore
from tests.deploy.paths import DEPLOY, REPO, settings_from_env

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE)[1]


def test_a_builder_stage_makes_the_wheel_and_the_runtime_is_python_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    builder, runtime = stages[0], stages[-1]
    assert builder.name == "builder"
    assert any("pip wheel" in i.args for i in builder.all("RUN"))
    assert runtime.base.startswith("python:3.11-slim"), runtime.base
    copied_from = [i.flags.get("from") for i in runtime.all("COPY")]
    assert "builder" in copied_from
    assert all("pip" not in i.args for i in runtime.all("RUN")), "the runtime stage installs nothing"


def test_the_runtime_runs_as_a_numeric_unprivileged_user(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert users, "no USER: the gateway would run as root"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and int(uid) > 0, "runAsNonRoot can only verify a numeric, non-zero USER"
    assert not gid or (gid.isdigit() and int(gid) > 0)


def test_ports_volume_and_settings_agree(stages: list[Stage]) -> None:
    runtime = stages[-1]
    env = runtime.env()
    settings = settings_from_env(env)  # every ONESPACE_* is a setting and parses
    assert settings.host == "0.0.0.0"
    assert settings.metrics_host == "0.0.0.0"
    exposed = {int(p.split("/")[0]) for i in runtime.all("EXPOSE") for p in i.words}
    assert exposed == {settings.port, settings.metrics_port} == {50051, 9464}
    volumes = [v for i in runtime.all("VOLUME") for v in i.words]
    assert str(settings.data_dir) in volumes


def test_the_entrypoint_is_the_onespace_command(stages: list[Stage]) -> None:
    runtime = stages[-1]
    entrypoint = runtime.all("ENTRYPOINT")[-1].words
    command = runtime.all("CMD")[-1].words
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["onespace"] and "onespace" in scripts
    args = build_parser().parse_args(command)  # the default command is a real sub-command
    assert args.command == "serve"


def test_the_healthcheck_runs_the_probe_the_image_copies(stages: list[Stage]) -> None:
    runtime = stages[-1]
    checks = runtime.all("HEALTHCHECK")
    assert len(checks) == 1
    command = checks[0].args.split(" CMD ", 1)[1]
    words = Instruction("CMD", command).words
    copied = {i.words[-1]: i.words[-2] for i in runtime.all("COPY") if "from" not in i.flags}
    assert words[-1] in copied, f"{words[-1]} is not COPYed into the image"
    assert copied[words[-1]] == "deploy/docker/healthcheck.py"
    assert words[0].startswith("/opt/venv/"), "the probe needs the virtualenv's grpcio"


def test_everything_copied_exists_and_is_in_the_build_context(stages: list[Stage]) -> None:
    ignore = DockerIgnore(REPO / ".dockerignore")
    sources = [
        source
        for stage in stages
        for instruction in stage.all("COPY")
        if "from" not in instruction.flags
        for source in instruction.words[:-1]
        if not source.startswith("--")
    ]
    assert sources
    for source in sources:
        path = REPO / source
        assert path.exists(), f"COPY {source}: no such file in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        sent = [f for f in files if not ignore.excluded(f.relative_to(REPO).as_posix())]
        assert sent, f"COPY {source}: .dockerignore leaves nothing of it in the build context"
        for f in sent:
            assert "__pycache__" not in f.parts and not f.name.endswith(".pyc"), f
    # The package's own sources must all be sent (a missing module would break the image).
    for package in ("server/onespace", "client/onespace_client"):
        for root, _, names in os.walk(REPO / package):
            for name in names:
                if name.endswith(".py"):
                    relative = (os.path.relpath(root, REPO) + "/" + name).replace(os.sep, "/")
                    assert not ignore.excluded(relative), relative


def test_the_build_context_leaves_out_the_rest_of_the_repository() -> None:
    ignore = DockerIgnore(REPO / ".dockerignore")
    for path in (".git/HEAD", ".venv/bin/python", "tests/harness.py", "data/x.sqlite", "docs/storage.md"):
        assert ignore.excluded(path), path
    assert ignore.excluded("server/onespace/__pycache__/app.cpython-311.pyc")
    assert not ignore.excluded("deploy/docker/healthcheck.py")
    assert ignore.excluded("deploy/k8s/base/secret.yaml")
