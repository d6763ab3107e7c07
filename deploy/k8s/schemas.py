"""Turns the schemas deploy/k8s/tools.sh fetches into the JSON schemas kubeconform reads, strict (a field the
schema does not name is an error, as `kubectl apply --validate=strict` has it):

  python schemas.py core WHEEL VERSION OUT KIND...   Kubernetes' own kinds, from the kubernetes-validate wheel
                                                     (its "local-strict" schemas, each made standalone)
  python schemas.py crd OUT CRD.yaml...              each version of each CustomResourceDefinition's
                                                     openAPIV3Schema

OUT/core/<kind>-<group>-<version>.json and OUT/crd/<group>/<kind>_<version>.json: kubeconform's
-schema-location templates `{{ .ResourceKind }}{{ .KindSuffix }}.json` and
`{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json`.
"""

import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

DEFINITIONS_REF = "/api/_definitions.json#/$defs/"


def core(wheel: Path, version: str, out: Path, kinds: list[str]) -> None:
    folder = f"kubernetes_validate/kubernetes-json-schema/{version}-local-strict/"
    with zipfile.ZipFile(wheel) as archive:
        definitions = json.loads(archive.read(folder + "_definitions.json"))["$defs"]
        for kind in kinds:
            schema = _local_refs(json.loads(archive.read(f"{folder}{kind}.json")))
            schema.pop("$id", None)
            schema["$defs"] = {name: _local_refs(definitions[name]) for name in _referenced(schema, definitions)}
            _write(out / "core" / f"{kind}.json", schema)


def _local_refs(node: Any) -> Any:
    """The wheel's schemas refer to one shared file of definitions; a standalone schema carries its own."""
    if isinstance(node, dict):
        return {key: (value.replace(DEFINITIONS_REF, "#/$defs/") if key == "$ref" else _local_refs(value))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_local_refs(item) for item in node]
    return node


def _referenced(schema: Any, definitions: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") not in found:
                name = ref.removeprefix("#/$defs/")
                found.add(name)
                pending.append(_local_refs(definitions[name]))
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def crd(out: Path, files: list[Path]) -> None:
    for file in files:
        for document in yaml.safe_load_all(file.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            spec = document["spec"]
            for version in spec["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                _write(out / "crd" / spec["group"] / f"{spec['names']['kind'].lower()}_{version['name']}.json",
                       schema)


def _strict(node: Any) -> Any:
    """OpenAPI v3 as a CRD has it, in JSON schema: objects closed unless they keep unknown fields, nullable and
    int-or-string spelled as types."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: (value if key == "properties" else _strict(value)) for key, value in node.items()}
    if "properties" in node:
        node["properties"] = {name: _strict(value) for name, value in node["properties"].items()}
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
    if node.pop("x-kubernetes-int-or-string", False) and "anyOf" not in node and "oneOf" not in node:
        node["type"] = ["integer", "string"]
    if node.pop("nullable", False) and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    return node


def _write(path: Path, schema: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema))


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["core", wheel, version, out, *kinds]:
            core(Path(wheel), version, Path(out), kinds)
        case ["crd", out, *files]:
            crd(Path(out), [Path(file) for file in files])
        case _:
            sys.exit(__doc__)
