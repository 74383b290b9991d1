"""Two distributions from one repository: `onespace-client` (grpcio, protobuf, numpy; the CLI's
client commands; the .proto files and typed generated code) and `onespace` (the server), which
depends on it. Built here as wheels and read back."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, zipfile.ZipFile]:
    out = tmp_path_factory.mktemp("wheels")
    for project in (ROOT / "client", ROOT):
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
             "--wheel-dir", str(out), str(project)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    found = {p.name.split("-")[0]: zipfile.ZipFile(p) for p in out.glob("*.whl")}
    assert sorted(found) == ["onespace", "onespace_client"], sorted(found)
    return found


def metadata(wheel: zipfile.ZipFile) -> tuple[list[str], list[str]]:
    """(runtime requirement names, entry points) of a wheel."""
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    message = Parser().parsestr(wheel.read(name).decode())
    requires = [r for r in message.get_all("Requires-Dist") or [] if "extra ==" not in r]
    names = [
        r.split(";")[0].split("<")[0].split(">")[0].split("=")[0].split("[")[0].strip() for r in requires
    ]
    scripts = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    return names, wheel.read(scripts).decode().split()


def test_the_client_wheel_carries_only_the_client(wheels: dict[str, zipfile.ZipFile]) -> None:
    wheel = wheels["onespace_client"]
    requires, scripts = metadata(wheel)
    assert sorted(requires) == ["grpcio", "numpy", "protobuf"]
    assert "onespace-client" in scripts
    files = wheel.namelist()
    assert not [f for f in files if f.startswith("onespace/")], "server code in the client wheel"
    protos = {f.rsplit("/", 1)[1] for f in files if f.startswith("onespace_client/proto/onespace/v1/")}
    assert protos == {p.name for p in (ROOT / "protos" / "onespace" / "v1").glob("*.proto")}
    assert "onespace_client/py.typed" in files and "onespace_client/v1/search_pb2.pyi" in files


def test_the_server_wheel_depends_on_the_client_and_does_not_copy_it(
    wheels: dict[str, zipfile.ZipFile],
) -> None:
    wheel = wheels["onespace"]
    requires, scripts = metadata(wheel)
    assert "onespace-client" in requires and "usearch" in requires
    assert "onespace" in scripts
    assert not [f for f in wheel.namelist() if f.startswith("onespace_client/")]
