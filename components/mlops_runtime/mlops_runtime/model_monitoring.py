"""What detect_drift adds when it knows the production model: data quality against its signature,
prediction drift (its outputs on the batch against those stored in the reference profile), and the
feature importances that weight the drift share."""
from __future__ import annotations

from typing import Any

import pandas as pd

from . import data_quality, drift, models, prediction_drift, prediction_log, signature, tables
from .errors import BadInputError, ModelError
from .log import get_logger

log = get_logger(__name__)


def feature_importances(card: dict[str, Any], *, label: str = "--model-uri") -> dict[str, float]:
    """The card's ``feature_importance`` ({feature: permutation importance}), checked."""
    importances = card.get("feature_importance")
    if not isinstance(importances, dict) or not importances:
        raise ModelError("the model card has no feature_importance (train records permutation importances)",
                         label=label)
    if not all(isinstance(k, str) and type(v) in (int, float) and v == v for k, v in importances.items()):
        raise ModelError("the model card's feature_importance must map feature names to numbers", label=label)
    return {k: float(v) for k, v in importances.items()}


def score(model: Any, table: pd.DataFrame, model_signature: dict[str, Any], *, uri: str,
          label: str) -> pd.DataFrame:
    features, _ = signature.check_table(table, model_signature, uri=uri, label=label)
    try:
        return prediction_drift.prediction_frame(model, features)
    except (ValueError, TypeError) as error:
        raise BadInputError(f"{uri}: the model cannot score this table ({' '.join(str(error).split())[:200]})",
                            label=label) from None


def monitor_model(*, model_uri: str | None, predictions_uri: str | None, reference: Any, reference_uri: str | None,
                  current_uri: str, thresholds: drift.Thresholds,
                  quality_share_threshold: float, logged: bool = False) -> dict[str, Any]:
    """``{"data_quality": ..., "predictions": ...}`` for the drift report (None where not computed).

    ``logged``: the current table is a prediction log (:func:`mlops_runtime.prediction_log.is_log_table`);
    without ``predictions_uri`` its served predictions are the current outputs (no scoring again).
    """
    result: dict[str, Any] = {"data_quality": None, "predictions": None}
    if model_uri is None and predictions_uri is None and not logged:
        return result
    current_frame = tables.read_table(current_uri, label="--current-uri") if model_uri or logged else None
    model = card = model_signature = None
    if model_uri:
        model, card = models.load_model(model_uri, label="--model-uri")
        model_signature = signature.from_card(card, label="--model-uri")
        result["data_quality"] = data_quality.check_quality(current_frame, model_signature, uri=current_uri,
                                                            share_threshold=quality_share_threshold)
    reference_predictions: Any = None
    if drift.is_profile(reference):
        reference_predictions = reference.get("predictions")
    elif model is not None and reference_uri:
        reference_predictions = score(model, tables.read_table(reference_uri, label="--reference-uri"),
                                      model_signature, uri=reference_uri, label="--reference-uri")
    if reference_predictions is None:
        result["predictions"] = {"skipped": "the reference profile has no predictions section"}
        return result
    if predictions_uri:
        current_predictions = tables.read_table(predictions_uri, label="--predictions-uri")
        label = "--predictions-uri"
    elif logged:
        current_predictions = prediction_log.logged_predictions(current_frame)
        label = "--current-uri"
    elif result["data_quality"]["schema_errors"]:
        result["predictions"] = {"skipped": "the batch does not fit the model's signature"}
        return result
    else:
        current_predictions = score(model, current_frame, model_signature, uri=current_uri, label="--current-uri")
        label = "--current-uri"
    report = drift.detect_drift(reference_predictions, current_predictions, thresholds=thresholds,
                                reference_label="--reference-profile-uri", current_label=label)
    report["source"] = "predictions_uri" if predictions_uri else "prediction_log" if logged else "model_uri"
    result["predictions"] = report
    return result
