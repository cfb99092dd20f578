"""Turn checked rows into predictions, as fast as the model allows and always bit-identical to it.

The feature matrix is built with numpy in the order the model was fitted on. pandas is imported
only for models that select columns by name (a ``ColumnTransformer``, text features), because
importing it costs about half a second of start-up and the image need not carry it otherwise.

Random forests get a shortcut. Their ``predict_proba`` spends ~4 ms of its ~4.5 ms for one row
in joblib's scheduling of 100 one-tree tasks, even with ``n_jobs=None``. The shortcut asks each
tree's ``tree_`` for its leaf values, in the same order, summing into the same float64 buffer,
so its results are the same bits; as this leans on how scikit-learn computes a forest's output,
it is checked against the model's own ``predict``/``predict_proba`` on probe rows at load time
and dropped, with a warning, if anything differs.

The shortcut serves only forests that are not compiled (``image.runtime: sklearn``, or a forest
whose conversion or parity failed): a forest that compiles is served by ONNX Runtime under the
default ``auto``, which beats the shortcut (``bench/bench_forest.py``, one thread: one row
0.09 ms against 1.2 ms, a one-row request in process 0.36 ms against 4.6 ms, 1,000 rows 15.1 ms
against 15.9 ms, for the wine forest of 100 trees).
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cd4ml.serve.jsontext import records
from cd4ml.serve.schema import Field, label_key

log = logging.getLogger("cd4ml.serve")


class ModelMismatch(Exception):
    """The model does not take the features its recorded signature lists."""


@dataclass(frozen=True)
class Prediction:
    """Labels (or values), and for classifiers the class probabilities: one row of floats per
    prediction in ``keys`` order (kept as rows: a dict per row costs more than the model on
    a large batch, and JSON text is made straight from the rows)."""

    predictions: list
    proba: list[list[float]] | None = None
    keys: tuple[str, ...] = ()
    #: every probability finite (NaN would need json's own spelling)
    finite: bool = True

    @property
    def probabilities(self) -> list[dict[str, float]] | None:
        """``[{class: p}, ...]`` as the response and the log show them."""
        if self.proba is None:
            return None
        return [dict(zip(self.keys, p)) for p in self.proba]

    def probabilities_json(self) -> bytes:
        """The JSON text of :attr:`probabilities` (NaN as ``json`` writes it)."""
        if self.proba is None:
            return b"null"
        if not self.finite:
            return json.dumps(self.probabilities, separators=(",", ":")).encode()
        return b"[" + records(list(self.keys), self.proba) + b"]"


class Predictor:
    """A loaded model plus everything precomputed to call it cheaply for each request."""

    runtime = "sklearn"

    def __init__(self, model: Any, fields: tuple[Field, ...], task: str, stats: dict | None = None):
        self.model = model
        self.fields = fields
        self.classifier = task == "classification"
        names = [f.name for f in fields]
        fitted = getattr(model, "feature_names_in_", None)
        if fitted is not None:
            fitted = [str(n) for n in fitted]
            if sorted(fitted) != sorted(names):
                raise ModelMismatch(
                    f"the model was fitted on features {_short(fitted)} but model.json's "
                    f"signature lists {_short(names)}; the artifact is inconsistent, retrain it")
            order = [names.index(n) for n in fitted]
        else:
            n_in = getattr(model, "n_features_in_", len(names))
            if n_in != len(names):
                raise ModelMismatch(f"the model takes {n_in} features but model.json's signature "
                                    f"lists {len(names)}; the artifact is inconsistent, retrain it")
            order = list(range(len(names)))
        #: model order -> position in a checked row (signature order)
        self._order = order
        self._identity = order == list(range(len(names)))
        self._model_fields = [fields[i] for i in order]
        self.needs_frame = any(f.dtype == "str" for f in fields) or _selects_by_name(model)
        #: fitted on named columns but fed an array, in the fitted order checked above; the
        #: server silences scikit-learn's "no feature names" warning for it (quiet_positional)
        self.positional = fitted is not None and not self.needs_frame
        self.classes: list | None = None
        self._keys: list[str] = []
        self._classes: Any = None
        if self.classifier:
            classes = getattr(model, "classes_", None)
            if classes is not None:
                self._classes = classes
                self.classes = [c.item() if hasattr(c, "item") else c for c in classes]
                self._keys = [label_key(c) for c in self.classes]
        self._proba = self.classifier and hasattr(model, "predict_proba") and bool(self._keys)
        probes = probe_rows(fields, stats or {})
        self._fast = _forest_shortcut(model)
        if self._fast is not None and not self._agrees(probes):
            self._fast = None
        #: labels read off predict_proba (one model call per request), where that was checked
        self.single_call = (self._proba and self._fast is None and _argmax_predicts(model)
                            and self._argmax_agrees(probes))

    @property
    def order(self) -> tuple[int, ...]:
        """For each feature in the model's own order, its position in a checked row."""
        return tuple(self._order)

    @property
    def shortcut(self) -> bool:
        """Whether the forest shortcut is in use (it passed the load-time check)."""
        return self._fast is not None

    # -------------------------------------------------------------------------------- predict

    def predict(self, rows: list[list[Any]], matrix: Any = None) -> Prediction:
        """Predict checked rows (signature order, ``None`` for null); raises ``ValueError``
        (and friends) when the model itself refuses the values. ``matrix``: the rows as a
        float64 array, when the request's parser made one already."""
        X = self.matrix(rows, matrix)
        if self._fast is not None:
            out = self._fast(X)
            if out is not None:
                labels, proba = out
                return self._result(labels, proba)
        if self.single_call:
            proba = self.model.predict_proba(X)
            return self._result(self._classes.take(proba.argmax(axis=1), axis=0), proba)
        if self.classifier:
            labels = self.model.predict(X)
            return self._result(labels, self.model.predict_proba(X) if self._proba else None)
        return Prediction(self.model.predict(X).tolist())

    def _result(self, labels: Any, proba: Any) -> Prediction:
        if not self.classifier or proba is None or not self._proba:
            return Prediction(labels.tolist())
        import numpy as np

        return Prediction(labels.tolist(), proba.tolist(), tuple(self._keys),
                          bool(np.isfinite(proba).all()))

    def matrix(self, rows: list[list[Any]], matrix: Any = None) -> Any:
        """The model's input: a float64 array in fitted order, or a DataFrame when it needs names."""
        import numpy as np

        if self.needs_frame:
            return self._frame(rows)
        # numpy turns None into NaN in a float array, which is what a missing value is to sklearn
        X = np.array(rows, dtype=np.float64) if matrix is None else matrix
        return X if self._identity else X[:, self._order]

    def _frame(self, rows: list[list[Any]]) -> Any:
        import numpy as np
        import pandas as pd

        data = {}
        for f, i in zip(self._model_fields, self._order):
            values = [r[i] for r in rows]
            has_null = any(v is None for v in values)
            if f.dtype == "float" or (f.dtype == "int" and has_null):
                column = np.array(values, dtype=np.float64)
            elif f.dtype == "int":
                column = np.array(values, dtype=np.int64)
            elif f.dtype == "bool" and not has_null:
                column = np.array(values, dtype=bool)
            else:
                # text as objects; a missing value as NaN, which is how pandas read it in training
                column = np.array([np.nan if v is None else v for v in values], dtype=object)
            data[f.name] = column
        return pd.DataFrame(data, columns=[f.name for f in self._model_fields])

    # ----------------------------------------------------------------------- load-time check

    def _agrees(self, rows: list[list[Any]]) -> bool:
        import numpy as np

        assert self._fast is not None
        try:
            X = self.matrix(rows)
            fast = self._fast(X)
            with warnings.catch_warnings():
                # load time, one thread: the global filter state is ours to change here
                warnings.filterwarnings("ignore", message=_POSITIONAL, category=UserWarning)
                labels = self.model.predict(X)
                proba = self.model.predict_proba(X) if self.classifier else None
        except Exception as e:  # noqa: BLE001 - a probe row the model refuses says nothing of the shortcut
            log.warning("forest shortcut not used: probe rows failed: %s", e)
            return False
        if fast is None:
            return False
        same = np.array_equal(fast[0], labels) and (
            proba is None or (fast[1].dtype == proba.dtype and np.array_equal(fast[1], proba)))
        if not same:
            log.warning("forest shortcut not used: it differs from the model's own predictions")
        return bool(same)


    def _argmax_agrees(self, rows: list[list[Any]]) -> bool:
        """Whether ``classes_[argmax(predict_proba)]`` is ``predict`` on the probe rows, with the
        same label dtype (so answers and the log read the same either way)."""
        import numpy as np

        try:
            X = self.matrix(rows)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_POSITIONAL, category=UserWarning)
                labels = self.model.predict(X)
                proba = self.model.predict_proba(X)
            derived = self._classes.take(np.argmax(proba, axis=1), axis=0)
        except Exception as e:  # noqa: BLE001 - the two-call path is always right
            log.warning("one model call per request not used: probe rows failed: %s", e)
            return False
        same = derived.dtype == labels.dtype and np.array_equal(derived, labels)
        if not same:
            log.warning("one model call per request not used: the argmax of predict_proba "
                        "differs from predict on probe rows; calling both")
        return bool(same)


_POSITIONAL = "X does not have valid feature names"


def load(model_dir: Path, fields: tuple[Field, ...], expected_sha256: str | None = None,
         threads: int = 1) -> Any:
    """The predictor for ``model_dir``: the compiled one (:mod:`cd4ml.serve.compiled`) where the
    image carries it, else the scikit-learn model itself. Raises ``ArtifactMismatch``,
    ``ModelMismatch`` or ``CompiledMismatch`` for an artifact that must not serve."""
    from cd4ml import artifacts
    from cd4ml.serve import compiled

    meta = artifacts.read_meta(model_dir)
    onnx = compiled.load(model_dir, fields, expected_sha256 or meta.sha256, threads)
    if onnx is not None:
        return onnx
    model, meta = artifacts.load(model_dir, expected_sha256=expected_sha256)
    return Predictor(model, fields, meta.task, meta.stats)

#: classifiers whose ``predict`` is, in scikit-learn's code, the class of the highest
#: ``predict_proba`` (or of a decision function that it rises with): for these, one call
#: gives both. Exact classes only: a subclass may predict otherwise (a tuned threshold).
_ARGMAX_CLASSIFIERS = {
    "sklearn.ensemble._forest": ("RandomForestClassifier", "ExtraTreesClassifier"),
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting": (
        "HistGradientBoostingClassifier",),
    "sklearn.ensemble._gb": ("GradientBoostingClassifier",),
    "sklearn.tree._classes": ("DecisionTreeClassifier", "ExtraTreeClassifier"),
    "sklearn.linear_model._logistic": ("LogisticRegression",),
}


def _argmax_predicts(model: Any) -> bool:
    """Whether the model (or a plain Pipeline's last step) is one of ``_ARGMAX_CLASSIFIERS``.

    Necessary, not sufficient: a tie between two classes' probabilities, or a softmax rounding
    two close scores to one value, could still part argmax from ``predict``; the probe-row
    check at load stands guard too, and the instance must not have had ``predict`` replaced."""
    final = model
    steps = getattr(model, "steps", None)
    if steps:
        pipeline = sys.modules.get("sklearn.pipeline")
        if pipeline is None or type(model) is not pipeline.Pipeline:
            return False
        final = steps[-1][1]
    kind = type(final)
    if kind.__name__ not in _ARGMAX_CLASSIFIERS.get(kind.__module__, ()):
        return False
    return not any(name in vars(obj) for obj in (model, final)
                   for name in ("predict", "predict_proba"))


def quiet_positional() -> None:
    """Silence scikit-learn's warning that an array has no feature names, process-wide.

    For a server whose predictor is ``positional``: the columns are in the fitted order (checked
    at load), so the warning says nothing, and it would fire on every request. A filter set
    once, rather than ``catch_warnings`` per call, because the latter is not thread-safe.
    """
    warnings.filterwarnings("ignore", message=_POSITIONAL, category=UserWarning)


def _short(names: list[str]) -> str:
    return ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")


def _selects_by_name(model: Any) -> bool:
    """Whether some step picks columns by name, so that it must be given a DataFrame."""
    compose = sys.modules.get("sklearn.compose._column_transformer")
    if compose is None:  # unpickling would have imported it
        return False
    found: list[Any] = []

    def visit(obj: Any, depth: int = 0) -> None:
        if depth > 10 or found:
            return
        if isinstance(obj, compose.ColumnTransformer):
            found.append(obj)
            return
        for _, step in getattr(obj, "steps", None) or []:
            visit(step, depth + 1)
        for _, step in getattr(obj, "transformer_list", None) or []:
            visit(step, depth + 1)
    visit(model)
    return bool(found)


def _forest_shortcut(model: Any) -> Callable[[Any], tuple[Any, Any] | None] | None:
    """A joblib-free equivalent of a random forest's predict(_proba), or None if not a forest.

    Only exact scikit-learn forest classes qualify: a subclass may override what it predicts.
    """
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    final, pre = model, None
    steps = getattr(model, "steps", None)
    if steps:
        from sklearn.pipeline import Pipeline

        if type(model) is not Pipeline:
            return None
        final = steps[-1][1]
        pre = model[:-1] if len(steps) > 1 else None
    kind = type(final)
    if kind not in (RandomForestClassifier, ExtraTreesClassifier, RandomForestRegressor,
                    ExtraTreesRegressor) or getattr(final, "n_outputs_", 1) != 1:
        return None
    import numpy as np

    trees = list(final.estimators_)
    n_trees = len(trees)
    classifier = kind in (RandomForestClassifier, ExtraTreesClassifier)
    # Tree.predict is what each tree's predict/predict_proba returns after its input checks,
    # which cost 10 of a tree's 14 us on one row; the load-time probe check guards the rest
    parts = [t.tree_.predict for t in trees]
    if classifier:
        n_classes = int(final.n_classes_)
        classes = final.classes_

    def run(X: Any) -> tuple[Any, Any] | None:
        if pre is not None:
            X = pre.transform(X)
        if not isinstance(X, np.ndarray):
            return None  # sparse or exotic output: the model's own path knows what to do
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or not np.isfinite(X).all():
            # missing values and overflow have rules of their own (errors, or NaN-aware splits)
            return None
        if classifier:
            out = np.zeros((X.shape[0], n_classes), dtype=np.float64)
            for predict in parts:
                out += predict(X)[:, :n_classes]
            out /= n_trees
            return classes.take(np.argmax(out, axis=1), axis=0), out
        y = np.zeros(X.shape[0], dtype=np.float64)
        for predict in parts:
            y += predict(X)[:, 0]
        y /= n_trees
        return y, None

    return run


def probe_rows(fields: tuple[Field, ...], stats: dict, n: int = 11) -> list[list[Any]]:
    """Rows spanning the training data (its quantile edges and categories), for self-checks."""
    columns = []
    for f in fields:
        s = stats.get(f.name) or {}
        values: list[Any]
        if f.dtype in ("float", "int") and s.get("edges"):
            values = [float(v) for v in s["edges"] if v is not None] or [0.0]
            if f.dtype == "int":
                values = [round(v) for v in values]
        elif f.dtype == "str":
            values = [str(k) for k in (s.get("frequencies") or {})] or ["?"]
        elif f.dtype == "bool":
            values = [False, True]
        else:
            values = [0, 1] if f.dtype == "int" else [0.0, 1.0]
        columns.append([values[i % len(values)] for i in range(n)])
    return [list(r) for r in zip(*columns)]
