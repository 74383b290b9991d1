"""Generated protobuf code is committed; this fails when it is stale (regenerate with
`python protos/generate.py`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "protos" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate(tmp_path)
    committed = ROOT / "client" / "onespace_client" / "v1"
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()}
    current = {p.name: p.read_text() for p in committed.iterdir() if p.is_file()}
    assert sorted(fresh) == sorted(current), "generated files added or removed: run python protos/generate.py"
    stale = [name for name in fresh if fresh[name] != current[name]]
    assert stale == [], f"stale generated code {stale}: run python protos/generate.py"


def test_the_client_package_ships_the_current_protos(tmp_path: Path) -> None:
    shipped = ROOT / "client" / "onespace_client" / "proto" / "onespace" / "v1"
    sources = ROOT / "protos" / "onespace" / "v1"
    copies = {p.name: p.read_bytes() for p in shipped.glob("*.proto")}
    originals = {p.name: p.read_bytes() for p in sources.glob("*.proto")}
    assert copies == originals, "client/onespace_client/proto is stale: run python protos/generate.py"
