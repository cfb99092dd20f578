"""Feature statistics of training data, and drift of new data against them.

Training writes :func:`feature_stats` of its training rows into the model version; validation
compares new data with the statistics of the model now in production. Only the statistics travel
(never the training rows), so both drift measures work on binned data:

* numeric features are cut into ten bins at the training deciles (11 ``edges``; the outer bins are
  open, so new values below the training minimum or above the maximum still count). A value ``x``
  falls in bin ``k`` = the number of interior edges ``<= x``; equal edges (a discrete feature)
  give empty bins, which both sides treat alike. ``proportions`` are the training shares per bin.
* categorical features keep the share of every value (``frequencies``); a value never seen in
  training is a category of its own whose training share is 0.

PSI (population stability index) is ``sum((a - e) * ln(a / e))`` over the bins, with shares
floored at :data:`EPSILON` so that an empty bin does not make it infinite. Missing values are one
more bin, so a column that starts arriving empty drifts too.

KS is the two-sample Kolmogorov-Smirnov statistic ``max |F_train - F_new|`` **evaluated only at
the nine interior training deciles** (both distribution functions taken just below each edge).
That is the exact KS distance of the two binned distributions and a lower bound of the KS
distance of the raw data: between two edges the training distribution function rises by one bin
share (about 0.1), so the true statistic exceeds this one by at most the largest bin share.
Missing values are left out of KS (it compares distributions of the values present); categorical
features always use PSI, as KS needs an order.

Pure numpy/pandas, deterministic; every number written is a plain float or int (JSON-safe).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from cd4ml.spec import DriftSpec

BINS = 10
#: floor for a bin share in PSI: an empty bin on one side scores ln(share / 1e-4), not infinity
EPSILON = 1e-4
#: the PSI threshold for categorical features when the spec's method is KS (its threshold is a
#: KS distance, not a PSI); 0.2 is the customary "significant shift" level of PSI
CATEGORICAL_PSI_THRESHOLD = 0.2


@dataclass(frozen=True)
class DriftOutcome:
    """Drift of one feature: ``drifted`` when ``statistic > threshold``."""

    feature: str
    method: str  # psi | ks
    statistic: float
    threshold: float
    drifted: bool


# ----------------------------------------------------------------------------- statistics


def is_numeric(series: pd.Series) -> bool:
    """Numbers are binned; booleans, strings and categories are counted."""
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def feature_stats(frame: pd.DataFrame, features: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Statistics of each feature of ``frame``, in the format model versions store:

    numeric: ``{"kind": "numeric", "count", "missing", "mean", "std", "min", "max",
    "edges": [11 decile edges], "proportions": [10 bin shares]}`` (count and missing are row
    counts; mean/std/min/max and the lists are None/empty when the column has no value);
    categorical: ``{"kind": "categorical", "count", "missing", "frequencies": {value: share}}``
    with shares of the non-missing values and values as strings.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in features:
        if name not in frame.columns:
            from cd4ml.errors import DataError

            raise DataError(f"feature {name!r} is not a column of the data "
                            f"(columns: {', '.join(map(str, frame.columns[:12]))})")
        series = frame[name]
        out[str(name)] = _numeric_stats(series) if is_numeric(series) else _categorical_stats(series)
    return out


def _numeric_stats(series: pd.Series) -> dict[str, Any]:
    import numpy as np

    values = _values(series)
    missing = int(len(series) - len(values))
    if len(values) == 0:
        return {"kind": "numeric", "count": 0, "missing": missing, "mean": None, "std": None,
                "min": None, "max": None, "edges": [], "proportions": []}
    edges = np.quantile(values, np.linspace(0.0, 1.0, BINS + 1))
    return {
        "kind": "numeric",
        "count": len(values),
        "missing": missing,
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
        "edges": [float(e) for e in edges],
        "proportions": [float(p) for p in _bin_shares(values, edges)],
    }


def _categorical_stats(series: pd.Series) -> dict[str, Any]:
    present = series.dropna()
    counts = present.astype(str).value_counts()
    n = int(counts.sum())
    freqs = {str(k): float(v) / n for k, v in sorted(counts.items())} if n else {}
    return {"kind": "categorical", "count": n, "missing": int(len(series) - len(present)),
            "frequencies": freqs}


def _values(series: pd.Series) -> np.ndarray:
    """The finite values of a column as float64 (text that is not a number counts as missing)."""
    import numpy as np
    import pandas as pd

    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return values[np.isfinite(values)]


def _bin_shares(values: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    """Share of ``values`` in each of the ten bins cut at ``edges`` (outer bins open)."""
    import numpy as np

    if len(values) == 0:
        return np.zeros(BINS)
    interior = np.asarray(edges, dtype="float64")[1:-1]
    idx = np.searchsorted(interior, values, side="right")
    return np.bincount(idx, minlength=BINS).astype("float64") / len(values)


# ----------------------------------------------------------------------------- measures


def psi(expected: Iterable[float], actual: Iterable[float], epsilon: float = EPSILON) -> float:
    """Population stability index of two share vectors over the same bins."""
    import numpy as np

    e = np.maximum(np.asarray(list(expected), dtype="float64"), epsilon)
    a = np.maximum(np.asarray(list(actual), dtype="float64"), epsilon)
    if e.shape != a.shape:
        raise ValueError(f"psi: {len(e)} expected shares but {len(a)} actual ones")
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(stats: Mapping[str, Any], series: pd.Series) -> float:
    """PSI of a numeric column against its training statistics; missing values are a bin."""
    values = _values(series)
    return binned_numeric_psi(stats, bin_counts(stats, values), len(series) - len(values))


def numeric_ks(stats: Mapping[str, Any], series: pd.Series) -> float:
    """KS distance at the training deciles (see the module docstring for the approximation)."""
    return binned_numeric_ks(stats, bin_counts(stats, _values(series)))


def categorical_psi(stats: Mapping[str, Any], series: pd.Series) -> float:
    """PSI over category shares; unseen categories and missing values are categories too."""
    present = series.dropna().astype(str)
    counts = {str(k): int(v) for k, v in present.value_counts().items()}
    return binned_categorical_psi(stats, counts, len(series) - len(present))


# Counts instead of a column: what monitoring accumulates while it streams a prediction log,
# scored by the very same formulas.


def bin_counts(stats: Mapping[str, Any], values: np.ndarray) -> np.ndarray:
    """How many of the finite ``values`` fall in each training bin (one count of all of them
    when training saw no value and has no bins)."""
    import numpy as np

    edges = stats.get("edges") or []
    if len(edges) != BINS + 1:
        return np.array([len(values)], dtype="int64")
    interior = np.asarray(edges, dtype="float64")[1:-1]
    return np.bincount(np.searchsorted(interior, values, side="right"), minlength=BINS)


def binned_numeric_psi(stats: Mapping[str, Any], counts: Any, missing: int) -> float:
    """PSI from :func:`bin_counts` of the values present and the number of missing ones."""
    import numpy as np

    counts = np.asarray(counts, dtype="float64")
    present = float(counts.sum())
    n_new = present + missing
    if n_new == 0:
        return 0.0
    train_missing = _missing_share(stats)
    new_missing = 1.0 - present / n_new
    edges = stats.get("edges") or []
    if len(edges) != BINS + 1:  # training saw no value: only the missing share can be compared
        return psi([1 - train_missing, train_missing], [1 - new_missing, new_missing])
    expected = np.asarray(stats["proportions"], dtype="float64") * (1 - train_missing)
    shares = counts / present if present else np.zeros(BINS)
    actual = shares * (1 - new_missing)
    return psi(np.append(expected, train_missing), np.append(actual, new_missing))


def binned_numeric_ks(stats: Mapping[str, Any], counts: Any) -> float:
    """KS distance at the training deciles from :func:`bin_counts` of the values present."""
    import numpy as np

    counts = np.asarray(counts, dtype="float64")
    present = float(counts.sum())
    edges = stats.get("edges") or []
    if len(edges) != BINS + 1:
        return 0.0 if present == 0 else 1.0
    if present == 0:
        return 1.0  # values were there in training and none are now
    train_cdf = np.cumsum(np.asarray(stats["proportions"], dtype="float64"))[:-1]
    new_cdf = np.cumsum(counts / present)[:-1]
    return float(np.max(np.abs(train_cdf - new_cdf)))


def binned_categorical_psi(stats: Mapping[str, Any], counts: Mapping[str, int],
                           missing: int) -> float:
    """PSI over category shares from the count of each value (as text) and of missing ones."""
    n_new = sum(counts.values()) + missing
    if n_new == 0:
        return 0.0
    freqs: Mapping[str, float] = stats.get("frequencies") or {}
    train_missing = _missing_share(stats)
    cats = sorted(set(freqs) | set(counts))
    expected = [float(freqs.get(c, 0.0)) * (1 - train_missing) for c in cats]
    actual = [float(counts.get(c, 0)) / n_new for c in cats]
    expected.append(train_missing)
    actual.append(missing / n_new)
    return psi(expected, actual)


def _missing_share(stats: Mapping[str, Any]) -> float:
    """Training's share of missing rows; 0 when the statistics do not say how many rows."""
    missing = int(stats.get("missing") or 0)
    total = missing + int(stats.get("count") or 0)
    return missing / total if total and stats.get("count") is not None else 0.0


def feature_drift(name: str, stats: Mapping[str, Any], series: pd.Series, method: str,
                  threshold: float) -> DriftOutcome:
    """One feature's drift; categorical features use PSI whatever ``method`` says."""
    if stats.get("kind") == "categorical":
        return _outcome(name, "psi", categorical_psi(stats, series), threshold)
    if method == "ks":
        return _outcome(name, "ks", numeric_ks(stats, series), threshold)
    return _outcome(name, "psi", numeric_psi(stats, series), threshold)


def counted_drift(name: str, stats: Mapping[str, Any], counts: Any, missing: int, method: str,
                  threshold: float) -> DriftOutcome:
    """:func:`feature_drift` from counts: :func:`bin_counts` for a numeric feature, ``{value as
    text: count}`` for a categorical one, and the number of missing values."""
    if stats.get("kind") == "categorical":
        return _outcome(name, "psi", binned_categorical_psi(stats, counts, missing), threshold)
    if method == "ks":
        return _outcome(name, "ks", binned_numeric_ks(stats, counts), threshold)
    return _outcome(name, "psi", binned_numeric_psi(stats, counts, missing), threshold)


def _outcome(name: str, method: str, statistic: float, threshold: float) -> DriftOutcome:
    statistic = round(statistic, 12) if math.isfinite(statistic) else statistic
    return DriftOutcome(feature=name, method=method, statistic=statistic,
                        threshold=float(threshold), drifted=bool(statistic > threshold))


def threshold_for(spec: DriftSpec, name: str, stats: Mapping[str, Any]) -> float:
    """The threshold a feature is held to: its own, else the spec's; a categorical feature
    under KS gets the PSI threshold, as it is measured by PSI."""
    if stats.get("kind") == "categorical" and spec.method != "psi" and name not in spec.features:
        return CATEGORICAL_PSI_THRESHOLD
    return spec.threshold_for(name)


def detect_drift(frame: pd.DataFrame, baseline: Mapping[str, Mapping[str, Any]],
                 features: Iterable[str], spec: DriftSpec) -> tuple[DriftOutcome, ...]:
    """Drift of every feature that has baseline statistics and is a column of ``frame``."""
    out = []
    for name in features:
        stats = baseline.get(name)
        if stats is None or name not in frame.columns:
            continue
        out.append(feature_drift(name, stats, frame[name], spec.method,
                                 threshold_for(spec, name, stats)))
    return tuple(out)
