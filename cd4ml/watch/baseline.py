"""What a version predicted on its held-out rows at evaluation time: the yardstick of
prediction drift, and the calibration of the confidence-based accuracy estimate.

Recorded by ``evaluate`` for every version it scores as the candidate; for a version evaluated
before cd4ml recorded it (or a tracked run's model), :func:`ensure` computes it once from the
spec's data and split, the same rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.store import ModelVersion, PredictionBaseline, Store

#: confidence (the top class probability) is cut into this many equal bins in [0, 1]
CONFIDENCE_BINS = 10
#: the name predictions go by among the features of a finding
PREDICTION = "(prediction)"


def prediction_values(task: str, predictions: Any) -> Any:
    """Predictions as the drift statistics see them: class labels as text (as the server keys
    its probabilities), numbers as numbers."""
    import pandas as pd

    from cd4ml.serve.schema import label_key

    if task == "classification":
        return pd.Series([label_key(_plain(p)) for p in predictions], dtype=object)
    return pd.Series(predictions, dtype="float64")


def confidence_bin(confidence: Any) -> Any:
    """The bin index of each confidence in [0, 1] (1.0 goes in the top bin)."""
    import numpy as np

    return np.minimum((np.asarray(confidence, dtype="float64") * CONFIDENCE_BINS).astype("int64"),
                      CONFIDENCE_BINS - 1)


def record(store: Store, model: ModelVersion, estimator: Any, X: Any, y: Any) -> PredictionBaseline:
    """Predict the held-out rows ``X`` (labels ``y``) and keep the baseline of ``model``."""
    import numpy as np

    from cd4ml.stages.drift import feature_stats

    y_pred = np.asarray(estimator.predict(X))
    values = prediction_values(model.task, y_pred)
    stats = feature_stats(values.to_frame(PREDICTION), [PREDICTION])[PREDICTION]
    calibration: dict[str, list] = {}
    if model.task == "classification" and hasattr(estimator, "predict_proba") and len(y_pred):
        confidence = np.asarray(estimator.predict_proba(X)).max(axis=1)
        correct = y_pred == np.asarray(y)
        bins = confidence_bin(confidence)
        calibration = {
            "count": np.bincount(bins, minlength=CONFIDENCE_BINS).tolist(),
            "correct": np.bincount(bins, weights=correct, minlength=CONFIDENCE_BINS)
            .astype("int64").tolist(),
        }
    return store.record_prediction_baseline(model.id, len(y_pred), stats, calibration)


def ensure(spec: Spec, store: Store, model: ModelVersion) -> PredictionBaseline:
    """The recorded baseline of ``model``, computed now from the spec's held-out rows if there
    is none yet."""
    found = store.prediction_baseline(model.id)
    if found is not None:
        return found
    from cd4ml.stages.data import load_frame, split
    from cd4ml.stages.evaluate import load_model

    frame = load_frame(spec.data)
    test = frame.iloc[split(spec, frame).test_index]
    features = [i["name"] for i in (model.signature or {}).get("inputs", [])]
    return record(store, model, load_model(model), test[features], test[spec.data.target])


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
