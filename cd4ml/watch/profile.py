"""What one model version met in a window, accumulated record by record in bounded memory.

Rows are buffered a chunk at a time and folded into counts with numpy: per numeric feature the
training bins (:func:`cd4ml.stages.drift.bin_counts`), missing values, values below the
training minimum or above the maximum; per categorical feature the count of each value; the
predictions, counted the same way; the confidence of each prediction in the bins the held-out
rows were calibrated in. Rows whose request id has a label are kept whole (prediction,
probabilities, label, slice values) for the realised metrics; nothing else is kept.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cd4ml.serve.schema import label_key
from cd4ml.watch.baseline import CONFIDENCE_BINS, confidence_bin

CHUNK = 65_536


@dataclass
class FeatureCounts:
    """One feature (or the predictions): counts over the window."""

    name: str
    numeric: bool
    bins: Any = None  # numpy int64 bin counts (numeric)
    values: Counter = field(default_factory=Counter)  # value as text -> count (categorical)
    missing: int = 0
    below: int = 0  # under the training minimum
    above: int = 0  # over the training maximum
    unseen: int = 0  # categories training never saw


@dataclass(frozen=True)
class Joined:
    """A logged prediction row with its label."""

    prediction: Any
    label: Any
    probabilities: dict | None
    slices: dict


class VersionProfile:
    """Accumulates one version's records; ``finish`` folds what is still buffered."""

    def __init__(self, version: int, names: list[str], stats: dict[str, dict],
                 prediction_stats: dict, task: str, labels: dict[str, dict[int, tuple]],
                 slice_columns: tuple[str, ...]):
        import numpy as np

        self.version = version
        self.task = task
        self.requests = 0
        self.rows = 0
        self.refused = 0
        self.first: str | None = None
        self.last: str | None = None
        self._names = tuple(names)
        self._stats = stats
        numeric = [n for n in names if (stats.get(n) or {}).get("kind", "numeric") == "numeric"]
        self._numeric = numeric
        self._categorical = [n for n in names if n not in numeric]
        self.features = {n: FeatureCounts(n, n in numeric) for n in names}
        for n in numeric:
            self.features[n].bins = np.zeros(_bins(stats.get(n) or {}), dtype="int64")
        self.prediction = FeatureCounts("(prediction)", task != "classification")
        if self.prediction.numeric:
            self.prediction.bins = np.zeros(_bins(prediction_stats), dtype="int64")
        self._prediction_stats = prediction_stats
        self.confidence = np.zeros(CONFIDENCE_BINS, dtype="float64")
        self.confidence_sum = 0.0
        self.with_confidence = 0
        self._labels = labels
        self._slices = slice_columns
        self.joined: list[Joined] = []
        self._num_rows: list[list[Any]] = []
        self._cat_rows: list[list[Any]] = []
        self._preds: list[Any] = []
        self._conf: list[float] = []

    # ---------------------------------------------------------------------------- records

    def add(self, record: dict[str, Any]) -> None:
        when = record["time"]
        if self.first is None or when < self.first:
            self.first = when
        if self.last is None or when > self.last:
            self.last = when
        if "refused" in record:
            self.refused += 1
            return
        self.requests += 1
        inputs, predictions = record["inputs"], record["predictions"]
        probabilities = record.get("probabilities")
        self.rows += len(inputs)
        numeric, categorical = self._numeric, self._categorical
        for row in inputs:
            if not isinstance(row, dict):
                row = {}
            self._num_rows.append([row.get(n) for n in numeric])
            if categorical:
                self._cat_rows.append([row.get(n) for n in categorical])
        self._preds.extend(predictions)
        if isinstance(probabilities, list):
            for p in probabilities:
                if isinstance(p, dict) and p:
                    self._conf.append(max(p.values()))
        rid = record.get("request_id")
        if rid in self._labels:
            self._join(record, self._labels[rid])
        if len(self._num_rows) >= CHUNK:
            self._fold()

    def _join(self, record: dict[str, Any], wanted: dict[int, tuple]) -> None:
        probabilities = record.get("probabilities") or []
        for i, (label, given) in wanted.items():
            if i >= len(record["predictions"]):
                continue
            row = record["inputs"][i] if isinstance(record["inputs"][i], dict) else {}
            slices = {c: given.get(c, row.get(c)) for c in self._slices}
            proba = probabilities[i] if i < len(probabilities) else None
            self.joined.append(Joined(record["predictions"][i], label, proba, slices))

    # ---------------------------------------------------------------------------- folding

    def finish(self) -> VersionProfile:
        self._fold()
        return self

    def _fold(self) -> None:
        import numpy as np

        from cd4ml.stages.drift import bin_counts

        if self._num_rows and self._numeric:
            X = _matrix(self._num_rows)
            for j, name in enumerate(self._numeric):
                self._fold_numeric(self.features[name], self._stats.get(name) or {}, X[:, j],
                                   bin_counts)
        for j, name in enumerate(self._categorical):
            self._fold_categorical(self.features[name], self._stats.get(name) or {},
                                   [r[j] for r in self._cat_rows])
        if self._preds:
            if self.prediction.numeric:
                values = _matrix([[p] for p in self._preds])[:, 0]
                self._fold_numeric(self.prediction, self._prediction_stats, values, bin_counts)
            else:
                self._fold_categorical(self.prediction, self._prediction_stats,
                                       [label_key(p) if p is not None else None
                                        for p in self._preds])
        if self._conf:
            conf = np.asarray(self._conf, dtype="float64")
            self.confidence += np.bincount(confidence_bin(conf), minlength=CONFIDENCE_BINS)
            self.confidence_sum += float(conf.sum())
            self.with_confidence += len(conf)
        self._num_rows, self._cat_rows, self._preds, self._conf = [], [], [], []

    @staticmethod
    def _fold_numeric(counts: FeatureCounts, stats: dict, column: Any, bin_counts: Any) -> None:
        import numpy as np

        finite = np.isfinite(column)
        values = column[finite]
        counts.missing += int(len(column) - len(values))
        counts.bins += bin_counts(stats, values)
        if stats.get("min") is not None:
            counts.below += int((values < stats["min"]).sum())
            counts.above += int((values > stats["max"]).sum())

    @staticmethod
    def _fold_categorical(counts: FeatureCounts, stats: dict, column: list[Any]) -> None:
        known = stats.get("frequencies") or {}
        for value in column:
            if value is None:
                counts.missing += 1
                continue
            text = label_key(value) if isinstance(value, bool) else str(value)
            counts.values[text] += 1
        counts.unseen = sum(n for v, n in counts.values.items() if known and v not in known)


def _bins(stats: dict) -> int:
    from cd4ml.stages.drift import BINS

    return BINS if len(stats.get("edges") or []) == BINS + 1 else 1


def _matrix(rows: list[list[Any]]) -> Any:
    """Rows of numbers (None where missing) as float64; a value that is no number is missing."""
    import numpy as np

    try:
        return np.array(rows, dtype="float64")
    except (TypeError, ValueError):
        return np.array([[_number(v) for v in r] for r in rows], dtype="float64")


def _number(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float("nan")
