"""The evaluate stage: score the candidate and the production model on the same held-out rows,
overall and per slice.

A metric that is not defined on the rows at hand (ROC AUC of a slice holding one class, r2 of one
row, anything on an empty slice) is NaN, never an exception: the gate then fails closed on it.
Per-class precision or recall that is undefined (a class never predicted) counts as 0, the
conservative reading, as scikit-learn does by default.

Rows are recorded in the store under one timestamp per evaluation, which is how
:func:`evaluation_from_store` finds the latest complete evaluation of a run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import ArtifactError, DataError
from cd4ml.events import StageFailed, StageFinished, StageStarted, StageWarning, emit
from cd4ml.states import MetricScope

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from cd4ml.spec import Spec
    from cd4ml.store import ModelVersion, Store

NAN = float("nan")
#: how a missing slice value is named in results and in the store
MISSING = "(missing)"


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of one model version on the held-out rows, next to production's on the same rows.

    ``slices`` maps slice column -> value (as text) -> metric -> value.
    """

    model_version: int
    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]]
    production_version: int | None
    production_metrics: dict[str, float] | None
    production_slices: dict[str, dict[str, dict[str, float]]] | None
    confusion_matrix: list[list[int]] | None
    labels: list | None
    test_rows: int


def evaluate(spec: Spec, store: Store, model: ModelVersion, run_id: str,
             frame: pd.DataFrame | None = None) -> EvaluationResult:
    """Score ``model`` and the production model on the held-out split; record the metrics."""
    emit(StageStarted("evaluate", f"evaluating {model.ref}"))
    try:
        result = _evaluate(spec, store, model, run_id, frame)
    except Exception as e:
        emit(StageFailed("evaluate", str(e).splitlines()[0] if str(e) else type(e).__name__))
        raise
    head = next(iter(spec.metrics), None)
    message = f"{model.ref} on {result.test_rows} held-out rows"
    if head is not None:
        message += f": {head} {_show(result.metrics.get(head))}"
        if result.production_metrics is not None:
            message += (f" (production {spec.name}:{result.production_version}: "
                        f"{_show(result.production_metrics.get(head))})")
    emit(StageFinished("evaluate", message))
    return result


def _show(v: float | None) -> str:
    return "NaN" if v is None or math.isnan(v) else f"{v:.4g}"


def _evaluate(spec: Spec, store: Store, model: ModelVersion, run_id: str,
              frame: pd.DataFrame | None) -> EvaluationResult:
    from cd4ml.stages.data import feature_columns, load_frame, split

    if frame is None:
        frame = load_frame(spec.data)
    target = spec.data.target
    if frame[target].isna().any():
        raise DataError(f"{spec.data.path}: target column {target!r} has missing values; "
                        "drop or fill them")
    test = frame.iloc[split(spec, frame).test_index]
    task = spec.model.task

    candidate = load_model(model)
    features = _inputs(model) or feature_columns(spec.data, frame)
    _require_columns(spec, model, test, features)
    metrics, slices, cm, labels = _score_model(spec, candidate, model, test, features)
    rows = _metric_rows(metrics, slices, MetricScope.CANDIDATE, model.version)

    production = store.production_model(spec.name, spec.production.name if spec.production else None)
    prod_metrics = prod_slices = None
    if production is not None and production.id != model.id:
        prod_est = load_model(production)
        prod_features = _inputs(production) or features
        try:
            _require_columns(spec, production, test, prod_features)
            prod_metrics, prod_slices, _, _ = _score_model(spec, prod_est, production, test,
                                                           prod_features)
        except DataError as e:
            # no comparison is not a pass: NaN baselines make every relative rule fail closed,
            # and a person can still override with a reason
            emit(StageWarning("evaluate", f"cannot score production {production.ref}: {e}"))
            prod_metrics = {m: NAN for m in spec.metrics}
            prod_slices = {col: {v: dict(prod_metrics) for v in values}
                           for col, values in slices.items()}
        rows += _metric_rows(prod_metrics, prod_slices, MetricScope.PRODUCTION, production.version)
    else:
        production = None
    store.record_metrics(run_id, rows)
    return EvaluationResult(
        model_version=model.version, metrics=metrics, slices=slices,
        production_version=production.version if production else None,
        production_metrics=prod_metrics, production_slices=prod_slices,
        confusion_matrix=cm if task == "classification" else None,
        labels=labels if task == "classification" else None, test_rows=len(test))


def load_model(model: ModelVersion) -> Any:
    """Unpickle a model version's artifact after checking its recorded sha256."""
    from cd4ml import artifacts

    try:
        estimator, _ = artifacts.load(Path(model.artifact_uri), model.sha256)
    except artifacts.ArtifactMismatch as e:
        raise ArtifactError(f"{model.ref}: {e}") from None
    except OSError as e:
        raise ArtifactError(f"{model.ref}: cannot read {model.artifact_uri}: {e}") from None
    return estimator


def _inputs(model: ModelVersion) -> list[str]:
    return [i["name"] for i in (model.signature or {}).get("inputs", [])]


def _require_columns(spec: Spec, model: ModelVersion, frame: pd.DataFrame,
                     features: list[str]) -> None:
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise DataError(f"{spec.data.path}: model {model.ref} takes column {missing[0]!r}, which "
                        "the data does not have; restore the column or retrain")


def _score_model(spec: Spec, estimator: Any, model: ModelVersion, test: pd.DataFrame,
                 features: list[str]) -> tuple[dict, dict, list | None, list | None]:
    """Predict once, then score the whole held-out set and every slice value from those rows."""
    import numpy as np

    X, y = test[features], test[spec.data.target].to_numpy()
    try:
        y_pred = np.asarray(estimator.predict(X))
        proba = classes = None
        if spec.model.task == "classification" and "roc_auc" in spec.metrics \
                and hasattr(estimator, "predict_proba"):
            proba = np.asarray(estimator.predict_proba(X))
            fitted = getattr(estimator, "classes_", None)
            classes = None if fitted is None else _plain(fitted)
    except (ValueError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{spec.data.path}: model {model.ref} cannot predict the held-out rows: "
                        f"{first}") from None

    def on(mask: Any) -> dict[str, float]:
        return score(spec.model.task, spec.metrics, y[mask], y_pred[mask],
                     None if proba is None else proba[mask], classes)

    everything = np.ones(len(y), dtype=bool)
    metrics = on(everything)
    slices: dict[str, dict[str, dict[str, float]]] = {}
    for col in spec.data.slices:
        values = slice_values(test[col])
        slices[col] = {v: on(values == v) for v in sorted(set(values))}
    cm = labels = None
    if spec.model.task == "classification":
        labels, cm = confusion(y, y_pred, (model.signature or {}).get("classes"))
    return metrics, slices, cm, labels


def slice_values(column: pd.Series) -> np.ndarray:
    """A slice column's values as text, with missing values named :data:`MISSING`."""
    import numpy as np

    return np.array([MISSING if _isna(v) else str(v) for v in column], dtype=object)


def _isna(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _metric_rows(metrics: dict[str, float], slices: dict, scope: MetricScope,
                 version: int) -> list[dict]:
    rows = [{"name": k, "value": v, "scope": scope, "model_version": version}
            for k, v in metrics.items()]
    for col, values in slices.items():
        for value, ms in values.items():
            rows += [{"name": k, "value": v, "scope": scope, "slice": col, "slice_value": value,
                      "model_version": version} for k, v in ms.items()]
    return rows


# ----------------------------------------------------------------------------- metric functions


def score(task: str, metrics: Sequence[str], y_true: Any, y_pred: Any, proba: Any = None,
          classes: Sequence[Any] | None = None) -> dict[str, float]:
    """The named metrics of predictions against labels; NaN where a metric is not defined."""
    import warnings

    import numpy as np

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    with warnings.catch_warnings():
        # undefined cases are handled below and come out as NaN; the warnings would only
        # repeat that (and pytest turns them into errors)
        warnings.simplefilter("ignore")
        if task == "classification":
            return {m: _classification(m, y_true, y_pred, proba, classes) for m in metrics}
        return {m: _regression(m, y_true, y_pred) for m in metrics}


def _classification(name: str, y_true: Any, y_pred: Any, proba: Any,
                    classes: Sequence[Any] | None) -> float:
    from sklearn import metrics as skm

    if len(y_true) == 0:
        return NAN
    if name == "accuracy":
        return float(skm.accuracy_score(y_true, y_pred))
    if name == "roc_auc":
        return NAN if proba is None or classes is None else roc_auc_ovr(y_true, proba, classes)
    fn = {"f1_macro": skm.f1_score, "precision_macro": skm.precision_score,
          "recall_macro": skm.recall_score}[name]
    return _finite(fn(y_true, y_pred, average="macro", zero_division=0))


def roc_auc_ovr(y_true: Any, proba: Any, classes: Sequence[Any]) -> float:
    """Macro one-vs-rest ROC AUC over the classes present in ``y_true`` (NaN below two).

    Computed class by class so that a slice missing some classes still gets a value; with every
    class present it equals scikit-learn's ``roc_auc_score(multi_class="ovr")``, and for two
    classes it is the usual binary AUC.
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score

    y_true, proba = np.asarray(y_true), np.asarray(proba)
    if len(y_true) == 0 or len(set(y_true.tolist())) < 2 or proba.ndim != 2:
        return NAN
    aucs = []
    for i, c in enumerate(classes):
        positive = y_true == c
        if i < proba.shape[1] and positive.any() and not positive.all():
            aucs.append(float(roc_auc_score(positive, proba[:, i])))
    return _finite(np.mean(aucs)) if aucs else NAN


def _regression(name: str, y_true: Any, y_pred: Any) -> float:
    import numpy as np
    from sklearn import metrics as skm

    if len(y_true) == 0:
        return NAN
    if name == "rmse":
        return _finite(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
    if name == "mae":
        return _finite(skm.mean_absolute_error(y_true, y_pred))
    if name == "r2":
        # r2 of one row, or of a constant target, is undefined: NaN rather than sklearn's 0 or 1
        if len(y_true) < 2:
            return NAN
        return _finite(skm.r2_score(y_true, y_pred, force_finite=False))
    raise ValueError(f"unknown regression metric {name!r}")


def _finite(v: Any) -> float:
    v = float(v)
    return v if math.isfinite(v) else NAN


def confusion(y_true: Any, y_pred: Any, classes: Sequence[Any] | None) -> tuple[list, list[list[int]]]:
    """Labels (the model's classes, then any unseen label) and the confusion matrix over them."""
    from sklearn.metrics import confusion_matrix

    labels = list(classes or [])
    extra = {v for v in [*_plain(y_true), *_plain(y_pred)] if v not in labels}
    labels += sorted(extra, key=str)
    cm = confusion_matrix(y_true, y_pred, labels=labels) if len(y_true) else []
    return labels, [[int(x) for x in row] for row in cm]


def _plain(values: Any) -> list:
    return [v.item() if hasattr(v, "item") else v for v in values]


# ----------------------------------------------------------------------------- from the store


def evaluation_from_store(store: Store, run_id: str, spec: Spec,
                          model: ModelVersion) -> EvaluationResult | None:
    """The latest evaluation of ``model`` recorded in run ``run_id``, or None if there is none.

    Stored NULLs come back as NaN; the confusion matrix and the row count are not stored
    (``confusion_matrix``/``labels`` are None and ``test_rows`` is 0).
    """
    rows = [m for m in store.metrics(run_id)
            if m.step is None and m.name in spec.metrics]
    mine = [m for m in rows if m.scope is MetricScope.CANDIDATE and m.model_version == model.version]
    if not mine:
        return None
    stamp = max(m.created_at for m in mine)
    batch = [m for m in rows if m.created_at == stamp]
    out: dict[MetricScope, tuple[dict, dict]] = {scope: ({}, {}) for scope in MetricScope}
    production_version = None
    for m in batch:
        if m.scope is MetricScope.PRODUCTION:
            production_version = m.model_version
        overall, slices = out[m.scope]
        value = NAN if m.value is None else float(m.value)
        if m.slice:
            slices.setdefault(m.slice, {}).setdefault(m.slice_value, {})[m.name] = value
        else:
            overall[m.name] = value
    has_production = production_version is not None
    return EvaluationResult(
        model_version=model.version, metrics=out[MetricScope.CANDIDATE][0],
        slices=out[MetricScope.CANDIDATE][1], production_version=production_version,
        production_metrics=out[MetricScope.PRODUCTION][0] if has_production else None,
        production_slices=out[MetricScope.PRODUCTION][1] if has_production else None,
        confusion_matrix=None, labels=None, test_rows=0)
