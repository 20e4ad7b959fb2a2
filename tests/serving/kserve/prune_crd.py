"""Make tests/serving/kserve/crd-schemas.json: the parts of KServe's CRD schemas our manifests use.

Run with the kserve repository's CRD files (config/crd/full/serving.kserve.io_{inferenceservices,
servingruntimes}.yaml, Apache-2.0, https://github.com/kserve/kserve):
    python tests/serving/kserve/prune_crd.py ISVC_CRD.yaml RUNTIME_CRD.yaml COMMIT
It keeps, along every path a rendered manifest uses (all options on), the schema node as KServe wrote it
(type, format, enum, required, pattern, bounds) and closes objects to other fields (additionalProperties:
false, as kubectl's strict field validation would refuse unknown fields). Never run at test time.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from mlops_runtime import kserve

KEEP = ("type", "format", "enum", "required", "pattern", "minimum", "maximum", "maxLength", "minLength",
        "x-kubernetes-int-or-string", "anyOf")


def prune(schema: dict, document) -> dict:
    node = {key: schema[key] for key in KEEP if key in schema}
    if isinstance(document, dict) and "properties" in schema:
        node["properties"] = {key: prune(schema["properties"][key], value) for key, value in document.items()
                              if key in schema["properties"]}
        unknown = sorted(set(document) - set(schema["properties"]))
        if unknown:
            raise SystemExit(f"not in KServe's schema: {unknown}")
        node["additionalProperties"] = False
    elif isinstance(document, dict) and "additionalProperties" in schema:
        node["additionalProperties"] = {k: v for k, v in schema["additionalProperties"].items() if k in KEEP}
    elif isinstance(document, list) and "items" in schema:
        merged: dict = {}
        for item in document:
            merged = _merge(merged, prune(schema["items"], item))
        node["items"] = merged
    return node


def _merge(a: dict, b: dict) -> dict:
    out = {**a, **b}
    if "properties" in a and "properties" in b:
        out["properties"] = {k: _merge(a["properties"].get(k, {}), b["properties"].get(k, {}))
                             for k in {**a["properties"], **b["properties"]}}
    return out


def version_schema(crd_file: str, version: str) -> dict:
    crd = yaml.safe_load(Path(crd_file).read_text())
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


def main(isvc_crd: str, runtime_crd: str, commit: str) -> None:
    service = kserve.inference_service("m", storage_uri="s3://b/r/m/1", runtime="r", model_version=1, cpu="1",
                                       memory="1Gi", min_replicas=1, max_replicas=2, canary_traffic_percent=10,
                                       service_account="sa", namespace="ns")
    runtime = kserve.serving_runtime("r", "img")
    runtime["metadata"]["namespace"] = "ns"
    for document in (service, runtime):
        document["metadata"] = {"name": "x"}  # metadata is Kubernetes' ObjectMeta, not in the CRD schema
    out = {
        "$comment": ("Pruned from KServe's CRDs (Apache License 2.0, https://github.com/kserve/kserve, commit "
                     f"{commit}, config/crd/full/) by tests/serving/kserve/prune_crd.py: only the fields our "
                     "manifests use, objects closed to other fields."),
        "InferenceService": prune(version_schema(isvc_crd, "v1beta1"), service),
        "ServingRuntime": prune(version_schema(runtime_crd, "v1alpha1"), runtime),
    }
    Path(__file__).with_name("crd-schemas.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
