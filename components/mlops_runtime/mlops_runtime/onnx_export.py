"""ONNX where it is exact: convert a fitted Pipeline with skl2onnx and keep it only if it agrees with the model.

One ONNX input per signature column (numbers as float32, text as strings), ``zipmap`` off (plain label and
probability tensors, as Triton needs). Parity on the test table: every label equal and every probability
within ``tolerance``; otherwise the reason is recorded and no ONNX file is kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

TARGET_OPSET = 17


@dataclass
class Export:
    onnx: bytes | None
    report: dict[str, Any] = field(default_factory=dict)


def onnx_inputs(features: pd.DataFrame, signature: dict[str, Any]) -> dict[str, np.ndarray]:
    inputs = {}
    for feature in signature["features"]:
        column = features[feature["name"]]
        if feature["kind"] == "numeric":
            inputs[feature["name"]] = column.to_numpy(dtype="float32").reshape(-1, 1)
        else:
            text = column.astype("object").where(column.notna(), "")
            inputs[feature["name"]] = np.asarray([str(v) for v in text], dtype=object).reshape(-1, 1)
    return inputs


def export(model: Any, signature: dict[str, Any], features: pd.DataFrame, *, tolerance: float) -> Export:
    """The ONNX bytes and a report, or no bytes and the report's ``reason``."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    report: dict[str, Any] = {"tolerance": tolerance, "rows": len(features), "target_opset": TARGET_OPSET}
    if any(f["kind"] == "datetime" for f in signature["features"]):
        return Export(None, {**report, "exported": False, "reason": "datetime inputs have no ONNX conversion"})
    types = [(f["name"], FloatTensorType([None, 1]) if f["kind"] == "numeric" else StringTensorType([None, 1]))
             for f in signature["features"]]
    is_classifier = hasattr(model, "predict_proba")
    try:
        options = {"zipmap": False} if is_classifier else None
        onnx_model = to_onnx(model, initial_types=types, options=options, target_opset=TARGET_OPSET)
        data = onnx_model.SerializeToString()
    except Exception as error:  # skl2onnx raises many types for unsupported estimators or options
        return Export(None, {**report, "exported": False,
                             "reason": f"skl2onnx cannot convert it: {type(error).__name__}: {str(error)[:300]}"})
    try:
        parity = check_parity(model, data, signature, features, tolerance=tolerance, is_classifier=is_classifier)
    except Exception as error:  # onnxruntime refusing the converted graph is a conversion that is not exact
        return Export(None, {**report, "exported": False,
                             "reason": f"onnxruntime cannot run the converted model: {type(error).__name__}: "
                                       f"{str(error)[:300]}"})
    report.update(parity)
    if parity["labels_equal"] != len(features) or parity.get("max_abs_diff", 0.0) > tolerance:
        return Export(None, {**report, "exported": False,
                             "reason": f"parity check failed: {len(features) - parity['labels_equal']} labels differ, "
                                       f"largest difference {parity.get('max_abs_diff', 0.0):.3g} (tolerance "
                                       f"{tolerance:g})"})
    return Export(data, {**report, "exported": True, "reason": "labels equal and probabilities within tolerance"})


def check_parity(model: Any, data: bytes, signature: dict[str, Any], features: pd.DataFrame, *, tolerance: float,
                 is_classifier: bool) -> dict[str, Any]:
    import onnxruntime

    quiet = onnxruntime.SessionOptions()
    quiet.log_severity_level = 4  # a failing run is reported in the result, not as onnxruntime's stderr lines
    session = onnxruntime.InferenceSession(data, sess_options=quiet, providers=["CPUExecutionProvider"])
    outputs = session.run(None, onnx_inputs(features, signature))
    expected = model.predict(features)
    labels = np.asarray(outputs[0]).reshape(-1)
    if is_classifier:
        equal = int(np.sum(labels.astype(str) == np.asarray(expected).astype(str)))
        difference = float(np.max(np.abs(np.asarray(outputs[1]) - model.predict_proba(features))))
        return {"labels_equal": equal, "max_abs_diff": difference, "compared": "labels and probabilities"}
    difference = float(np.max(np.abs(labels.astype("float64") - np.asarray(expected, dtype="float64"))))
    return {"labels_equal": len(features) if difference <= tolerance else 0, "max_abs_diff": difference,
            "compared": "predictions"}
