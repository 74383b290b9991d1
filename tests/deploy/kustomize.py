"""A small Kustomize renderer for deploy/k8s, so its output can be validated without a cluster.

It knows the features deploy/k8s uses and refuses any other: `resources` (files or directories),
`components`, `patches` given as JSON 6902 operation lists with a target, and `images`. When
`kubectl` is installed, tests/deploy/test_k8s.py also checks that `kubectl kustomize` renders the
same objects.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["load_documents", "render"]

_KNOWN_KEYS = {"apiVersion", "kind", "resources", "components", "patches", "images"}
Doc = dict[str, Any]


def load_documents(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kustomization(directory: Path) -> Doc:
    data = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    unknown = set(data) - _KNOWN_KEYS
    assert not unknown, f"{directory}/kustomization.yaml uses {sorted(unknown)}, unknown to this renderer"
    return data


def render(directory: Path, components: Sequence[Path] = ()) -> list[Doc]:
    """The objects `kustomize build directory` gives, with `components` added as if listed."""
    return _build(directory, [], extra_components=components)


def _build(directory: Path, docs: list[Doc], *, extra_components: Sequence[Path] = ()) -> list[Doc]:
    k = _kustomization(directory)
    docs = list(docs)
    for entry in k.get("resources", []):
        path = directory / entry
        docs += _build(path, []) if path.is_dir() else load_documents(path)
    for component in [*(directory / c for c in k.get("components", [])), *extra_components]:
        assert _kustomization(component)["kind"] == "Component", component
        docs = _build(component, docs)
    for patch in k.get("patches", []):
        operations = yaml.safe_load((directory / patch["path"]).read_text())
        assert isinstance(operations, list), f"{patch['path']}: only JSON 6902 patches are supported"
        matched = [d for d in docs if _matches(d, patch["target"])]
        assert len(matched) == 1, f"{patch['path']}: target {patch['target']} matched {len(matched)} objects"
        for operation in operations:
            _apply(matched[0], operation)
    for image in k.get("images", []):
        for doc in docs:
            for container in _containers(doc):
                if container["image"].split(":")[0].split("@")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def _matches(doc: Doc, target: Doc) -> bool:
    group, _, version = str(doc["apiVersion"]).rpartition("/")
    return bool(
        doc["kind"] == target["kind"]
        and doc["metadata"]["name"] == target.get("name", doc["metadata"]["name"])
        and group == target.get("group", "")
        and version == target.get("version", version)
    )


def _containers(doc: Doc) -> list[Doc]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _apply(doc: Doc, operation: Doc) -> None:
    """One JSON 6902 add, replace or remove (RFC 6901 pointers, `-` appends)."""
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    op = operation["op"]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op == "add":
            node.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            node[index] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del node[index]
        else:
            raise AssertionError(f"unsupported patch op {op!r}")
        return
    if op == "add":
        node[last] = copy.deepcopy(operation["value"])
    elif op == "replace":
        assert last in node, f"replace of a missing {operation['path']}"
        node[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        assert last in node, f"remove of a missing {operation['path']}"
        del node[last]
    else:
        raise AssertionError(f"unsupported patch op {op!r}")
