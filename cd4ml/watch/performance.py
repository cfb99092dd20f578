"""How well a deployed version did: realised metrics once labels exist, an estimate before.

Realised metrics are those of ``evaluate`` (:func:`cd4ml.stages.evaluate.score`) on the
labelled rows, overall and per slice value, each with its row count and a 95% interval:
Wilson's for accuracy (a proportion), a seeded percentile bootstrap for the others. Rules are
the gates' (:func:`cd4ml.stages.gate.check_rules`), with ``max_drop`` read against the offline
evaluation of the same version; a group with fewer than ``min_labels`` rows is shown but not
judged, so a handful of early labels cannot raise an alarm.

The estimate (as NannyML's CBPE) needs no label: each live prediction's confidence (its top
class probability) falls in a bin whose accuracy on the held-out rows is known from
evaluation; the expected accuracy is the mean over live rows of their bin's held-out accuracy
(the bin's mean confidence where no held-out row fell in it). It is only as good as the model's
calibration and never replaces a realised value: it is always labelled an estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cd4ml.watch.baseline import CONFIDENCE_BINS

if TYPE_CHECKING:
    from cd4ml.spec import MonitoringSpec
    from cd4ml.stages.gate import RuleOutcome
    from cd4ml.watch.profile import Joined

#: two-sided 95% normal quantile
Z95 = 1.959963984540054
BOOTSTRAP = 200


@dataclass(frozen=True)
class Realised:
    """One metric on one group of labelled rows."""

    metric: str
    slice: str | None
    slice_value: str | None
    rows: int
    value: float
    low: float  # 95% interval
    high: float
    offline: float | None  # the same version's offline evaluation
    judged: bool  # rows >= min_labels


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def realised(task: str, metrics: Sequence[str], rows: Sequence[Joined],
             offline: Mapping[str, float], offline_slices: Mapping[str, Mapping[str, Mapping[str, float]]],
             slice_columns: Sequence[str], min_labels: int) -> list[Realised]:
    """Every metric overall and per slice value of the labelled ``rows``."""
    from cd4ml.stages.evaluate import MISSING

    out = _group(task, metrics, rows, None, None, offline, min_labels)
    for column in slice_columns:
        groups: dict[str, list[Joined]] = {}
        for r in rows:
            # a slice column the label file did not give and the model does not take: no group
            if column not in r.slices:
                continue
            value = r.slices.get(column)
            groups.setdefault(MISSING if value is None else str(value), []).append(r)
        for value in sorted(groups):
            out += _group(task, metrics, groups[value], column, value,
                          (offline_slices.get(column) or {}).get(value) or {}, min_labels)
    return out


def _group(task: str, metrics: Sequence[str], rows: Sequence[Joined], column: str | None,
           value: str | None, offline: Mapping[str, float], min_labels: int) -> list[Realised]:
    import numpy as np

    from cd4ml.serve.schema import label_key
    from cd4ml.stages.evaluate import score

    if not rows:
        return []
    if task == "regression":
        y_true = np.array([r.label for r in rows], dtype="float64")
        y_pred = np.array([r.prediction for r in rows], dtype="float64")
    else:
        # classes as the server keys its probabilities, so that ROC AUC finds its columns
        y_true = np.array([label_key(r.label) for r in rows])
        y_pred = np.array([label_key(r.prediction) for r in rows])
    proba, classes = _probabilities(rows)
    values = score(task, metrics, y_true, y_pred, proba, classes)
    out = []
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(rows), len(rows)) for _ in range(BOOTSTRAP)]
    for name in metrics:
        v = values[name]
        if name == "accuracy":
            low, high = wilson(int((y_true == y_pred).sum()), len(rows))
        else:
            low, high = _bootstrap(task, name, y_true, y_pred, proba, classes, draws)
        base = offline.get(name)
        out.append(Realised(name, column, value, len(rows), v, low, high,
                            None if base is None or math.isnan(base) else float(base),
                            len(rows) >= min_labels))
    return out


def _probabilities(rows: Sequence[Joined]) -> tuple[Any, list[str] | None]:
    """The labelled rows' probabilities as a matrix over the classes, if every row has them;
    labels are compared as the server keys classes (text)."""
    import numpy as np

    if not rows or any(not r.probabilities for r in rows):
        return None, None
    classes = sorted(rows[0].probabilities or {})
    matrix = np.array([[(r.probabilities or {}).get(c, 0.0) for c in classes] for r in rows])
    return matrix, classes


def _bootstrap(task: str, name: str, y_true: Any, y_pred: Any, proba: Any,
               classes: list[str] | None, draws: list[Any]) -> tuple[float, float]:
    import numpy as np

    from cd4ml.stages.evaluate import score

    stats = []
    for idx in draws:
        v = score(task, [name], y_true[idx], y_pred[idx], None if proba is None else proba[idx],
                  classes)[name]
        if not math.isnan(v):
            stats.append(v)
    if not stats:
        return math.nan, math.nan
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def judge(spec: MonitoringSpec, results: Sequence[Realised]) -> tuple[list[RuleOutcome], list[str]]:
    """The rules' outcomes on the groups with enough labels, and a note for each rule (or slice
    value) left unjudged for want of labels."""
    from cd4ml.stages.gate import check_rules

    judged = [r for r in results if r.judged]
    metrics = {r.metric: r.value for r in judged if r.slice is None}
    offline = {r.metric: r.offline for r in judged if r.slice is None}
    slices: dict[str, dict[str, dict[str, float]]] = {}
    offline_slices: dict[str, dict[str, dict[str, float | None]]] = {}
    for r in judged:
        if r.slice is not None and r.slice_value is not None:
            slices.setdefault(r.slice, {}).setdefault(r.slice_value, {})[r.metric] = r.value
            offline_slices.setdefault(r.slice, {}).setdefault(r.slice_value, {})[r.metric] = r.offline
    rules, notes = [], []
    for rule in spec.rules:
        ready = bool(slices.get(rule.slice)) if rule.slice else rule.metric in metrics
        if ready:
            rules.append(rule)
        elif rule.slice and not any(r.slice == rule.slice for r in results):
            notes.append(f"{rule.describe()}: no labelled row says its {rule.slice} (give it "
                         "as a column of the label file); not judged")
        else:
            notes.append(f"{rule.describe()}: fewer than {spec.min_labels} labelled rows; not judged")
        if rule.slice:
            notes += [f"{rule.metric}[{r.slice}={r.slice_value}]: only {r.rows} labelled rows; "
                      "not judged" for r in results
                      if r.slice == rule.slice and r.metric == rule.metric and not r.judged]
    outcomes = check_rules(rules, metrics, slices, offline, offline_slices,  # type: ignore[arg-type]
                           against="offline")
    return outcomes, notes


@dataclass(frozen=True)
class Estimate:
    """Accuracy expected from the model's confidence; an estimate, never a measurement."""

    accuracy: float
    rows: int
    mean_confidence: float
    offline: float | None


def estimate(confidence_counts: Sequence[float], confidence_sum: float, calibration: Mapping[str, Any],
             offline: float | None) -> Estimate | None:
    """CBPE-style expected accuracy from live confidence bins and the held-out calibration."""
    n = int(sum(confidence_counts))
    if n == 0 or not calibration:
        return None
    counts, correct = calibration.get("count") or [], calibration.get("correct") or []
    if len(counts) != CONFIDENCE_BINS or len(correct) != CONFIDENCE_BINS:
        return None
    expected = 0.0
    for i, live in enumerate(confidence_counts):
        if not live:
            continue
        held = counts[i]
        # no held-out row at this confidence: trust the confidence itself (the bin's middle)
        accuracy = correct[i] / held if held else (i + 0.5) / CONFIDENCE_BINS
        expected += live * accuracy
    return Estimate(expected / n, n, confidence_sum / n, offline)
