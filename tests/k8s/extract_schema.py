"""Cut one version's OpenAPI schema out of a CustomResourceDefinition, for tests/k8s/*.schema.json.

    python tests/k8s/extract_schema.py CRD.yaml VERSION > tests/k8s/KIND-VERSION.schema.json

Descriptions are dropped (they are most of a CRD's size and validate nothing); everything else is kept as
published. Not a test: pytest does not collect it."""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml


def strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main(path: str, version: str) -> None:
    with open(path) as f:
        crd = yaml.safe_load(f)
    (found,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = strip(found["schema"]["openAPIV3Schema"])
    schema["x-ghapp-source"] = {
        "kind": crd["spec"]["names"]["kind"],
        "group": crd["spec"]["group"],
        "version": version,
        "annotations": crd["metadata"].get("annotations", {}),
    }
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
