"""What one model version met in a window, accumulated record by record in bounded memory.

Records are held a chunk at a time and folded into counts with numpy: per numeric feature the
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

#: records held as parsed before they are folded into counts (~5 MB for wine). Small enough
#: that the memory one chunk frees is what the next one takes: at 16,384 the allocator gave
#: it back to the system and faulted it in again, a sixth of the CPU of a long read
CHUNK = 2_048


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
        self._records: list[dict[str, Any]] = []

    # ---------------------------------------------------------------------------- records

    def add(self, record: dict[str, Any]) -> None:
        """One record of the log (as :func:`cd4ml.watch.logread.records` yields them); kept
        as parsed until a chunk is full, then folded in with C-level loops."""
        if "refused" in record:
            self.refused += 1
            self._stamp(record["time"])
            return
        self._records.append(record)
        if len(self._records) >= CHUNK:
            self._fold()

    def _stamp(self, when: str) -> None:
        if self.first is None or when < self.first:
            self.first = when
        if self.last is None or when > self.last:
            self.last = when

    def _join(self, record: dict[str, Any], wanted: dict[int, tuple]) -> None:
        probabilities = record.get("probabilities") or []
        for i, (label, given) in wanted.items():
            if i >= len(record["predictions"]):
                continue
            row = record["inputs"][i] if isinstance(record["inputs"][i], dict) else {}
            slices = {c: given[c] if c in given else row[c] for c in self._slices
                      if c in given or c in row}
            proba = probabilities[i] if i < len(probabilities) else None
            self.joined.append(Joined(record["predictions"][i], label, proba, slices))

    def merge(self, other: VersionProfile) -> None:
        """Add what another reader of the same version found in another part of the log."""
        other._fold()
        self._fold()
        self.requests += other.requests
        self.rows += other.rows
        self.refused += other.refused
        for when in (other.first, other.last):
            if when is not None:
                self._stamp(when)
        for name, counts in other.features.items():
            _add_counts(self.features[name], counts)
        _add_counts(self.prediction, other.prediction)
        self.confidence += other.confidence
        self.confidence_sum += other.confidence_sum
        self.with_confidence += other.with_confidence
        self.joined += other.joined

    # ---------------------------------------------------------------------------- folding

    def finish(self) -> VersionProfile:
        self._fold()
        return self

    def _fold(self) -> None:
        from operator import itemgetter

        from cd4ml.stages.drift import bin_counts

        records, self._records = self._records, []
        if not records:
            return
        stamps = list(map(itemgetter("time"), records))
        self._stamp(min(stamps))
        self._stamp(max(stamps))
        self.requests += len(records)
        rows = [row for r in records for row in r["inputs"]]
        self.rows += len(rows)
        if self._labels:
            for r in records:
                wanted = self._labels.get(str(r.get("request_id")))
                if wanted:
                    self._join(r, wanted)
        if self._numeric:
            X = _matrix(rows, self._numeric)
            for j, name in enumerate(self._numeric):
                self._fold_numeric(self.features[name], self._stats.get(name) or {}, X[:, j],
                                   bin_counts)
        for name in self._categorical:
            self._fold_categorical(self.features[name], self._stats.get(name) or {},
                                   [row.get(name) if type(row) is dict else None for row in rows])
        predictions = [p for r in records for p in r["predictions"]]
        if self.prediction.numeric:
            values = _matrix([{"p": p} for p in predictions], ["p"])[:, 0]
            self._fold_numeric(self.prediction, self._prediction_stats, values, bin_counts)
        else:
            self._fold_categorical(self.prediction, self._prediction_stats, predictions)
        probabilities = [p for r in records if r.get("probabilities")
                         for p in r["probabilities"] if p]
        if probabilities:
            self._fold_confidence(probabilities)

    def _fold_confidence(self, probabilities: list[dict]) -> None:
        import numpy as np

        conf = np.fromiter(map(max, map(dict.values, probabilities)), dtype="float64",
                           count=len(probabilities))
        self.confidence += np.bincount(confidence_bin(conf), minlength=CONFIDENCE_BINS)
        self.confidence_sum += float(conf.sum())
        self.with_confidence += len(conf)

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
        for value, n in Counter(column).items():  # few distinct values: key them once each
            if value is None:
                counts.missing += n
            else:
                counts.values[label_key(value) if isinstance(value, bool) else str(value)] += n
        counts.unseen = sum(n for v, n in counts.values.items() if known and v not in known)


def _add_counts(mine: FeatureCounts, theirs: FeatureCounts) -> None:
    if mine.bins is not None:
        mine.bins += theirs.bins
    mine.values.update(theirs.values)
    mine.missing += theirs.missing
    mine.below += theirs.below
    mine.above += theirs.above
    mine.unseen += theirs.unseen


def _bins(stats: dict) -> int:
    from cd4ml.stages.drift import BINS

    return BINS if len(stats.get("edges") or []) == BINS + 1 else 1


def _matrix(rows: list[Any], names: list[str]) -> Any:
    """The ``names`` of each row (a mapping) as float64: missing (absent, null) is NaN, and so
    is a value that is no number."""
    from itertools import chain
    from operator import itemgetter

    import numpy as np

    pick = itemgetter(*names)
    try:
        # one flat stream into a preallocated array: half the time of np.array over a list
        # of tuples (which discovers the shape and types first), the same values
        values = map(pick, rows) if len(names) == 1 else chain.from_iterable(map(pick, rows))
        X = np.fromiter(values, dtype="float64", count=len(rows) * len(names))
        X = X.reshape(len(rows), len(names))
    except (TypeError, ValueError, KeyError, AttributeError):
        X = np.array([[_number(r.get(n) if type(r) is dict else None) for n in names]
                      for r in rows], dtype="float64").reshape(len(rows), len(names))
    return X


def _number(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float("nan")
