"""A small Kustomize renderer for deploy/k8s, so its output can be validated without a cluster.

It knows the features deploy/k8s uses and refuses any other: `resources` (files or directories),
`components`, `patches` with a target given as JSON 6902 operation lists or as a strategic-merge
`$patch: delete`, `replacements` (one source field copied to target fields), and `images`. A
selector's missing group, version, kind or name matches any. When `kubectl` is installed,
tests/deploy/test_k8s.py also checks that `kubectl kustomize` renders the same objects.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["load_documents", "render"]

_KNOWN_KEYS = {"apiVersion", "kind", "resources", "components", "patches", "replacements", "images"}
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
    """The objects `kustomize build directory` gives; with `components`, those of a kustomization
    that lists `directory` as its resource and adds them (how a user adds a component to a
    variant: after the variant's own patches)."""
    docs = _build(directory, [])
    for component in components:
        docs = _component(component, docs)
    return docs


def _component(directory: Path, docs: list[Doc]) -> list[Doc]:
    assert _kustomization(directory)["kind"] == "Component", directory
    return _build(directory, docs)


def _build(directory: Path, docs: list[Doc]) -> list[Doc]:
    k = _kustomization(directory)
    docs = list(docs)
    for entry in k.get("resources", []):
        path = directory / entry
        docs += _build(path, []) if path.is_dir() else load_documents(path)
    for component in k.get("components", []):
        docs = _component(directory / component, docs)
    for patch in k.get("patches", []):
        operations = yaml.safe_load((directory / patch["path"]).read_text())
        matched = [d for d in docs if _matches(d, patch["target"])]
        assert len(matched) == 1, f"{patch['path']}: target {patch['target']} matched {len(matched)} objects"
        if isinstance(operations, dict):
            assert operations.get("$patch") == "delete", f"{patch['path']}: only $patch: delete"
            assert _matches(matched[0], _selector(operations)), f"{patch['path']} names another object"
            docs = [d for d in docs if d is not matched[0]]
            continue
        assert isinstance(operations, list), f"{patch['path']}: a JSON 6902 operation list expected"
        for operation in operations:
            _apply(matched[0], operation)
    for replacement in k.get("replacements", []):
        _replace(docs, replacement)
    for image in k.get("images", []):
        for doc in docs:
            for container in _containers(doc):
                if container["image"].split(":")[0].split("@")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def _matches(doc: Doc, target: Doc) -> bool:
    group, _, version = str(doc["apiVersion"]).rpartition("/")
    found = {"group": group, "version": version, "kind": doc["kind"], "name": doc["metadata"]["name"]}
    return all(target.get(key, value) == value for key, value in found.items())


def _selector(doc: Doc) -> Doc:
    """The selector naming `doc` itself (a strategic-merge patch names its object)."""
    group, _, version = str(doc["apiVersion"]).rpartition("/")
    return {"group": group, "version": version, "kind": doc["kind"], "name": doc["metadata"]["name"]}


def _replace(docs: list[Doc], replacement: Doc) -> None:
    """A kustomize replacement: one field of the one source object copied into the targets' fields."""
    source = replacement["source"]
    assert set(source) <= {"group", "version", "kind", "name", "fieldPath"}, f"unsupported source {source}"
    found = [d for d in docs if _matches(d, source)]
    assert len(found) == 1, f"replacement source {source} matched {len(found)} objects"
    value: Any = found[0]
    for part in source.get("fieldPath", "metadata.name").split("."):
        value = value[part]
    for target in replacement["targets"]:
        assert set(target) == {"select", "fieldPaths"}, f"unsupported replacement target {target}"
        selected = [d for d in docs if _matches(d, target["select"])]
        assert selected, f"replacement target {target['select']} matched nothing"
        for doc in selected:
            for path in target["fieldPaths"]:
                *parents, last = path.split(".")
                node = doc
                for part in parents:
                    node = node[part]
                assert last in node, f"replacement of a missing {path}"
                node[last] = copy.deepcopy(value)


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
