"""Feature statistics and the PSI/KS drift measures (pure numpy/pandas)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from cd4ml.errors import DataError
from cd4ml.spec import DriftSpec
from cd4ml.stages.drift import (
    BINS,
    CATEGORICAL_PSI_THRESHOLD,
    categorical_psi,
    detect_drift,
    feature_stats,
    numeric_ks,
    numeric_psi,
    psi,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 5000
    return pd.DataFrame({
        "x": rng.normal(10.0, 2.0, n),
        "k": rng.integers(0, 3, n).astype(float),  # discrete: many equal decile edges
        "c": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
        "b": rng.random(n) < 0.3,
    })


def _plain(o):
    """Every leaf is a built-in JSON type (no numpy scalars)."""
    if isinstance(o, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in o.items())
    if isinstance(o, list):
        return all(_plain(v) for v in o)
    return o is None or type(o) in (str, int, float, bool)


def test_stats_format_is_plain_json_and_deterministic(frame):
    stats = feature_stats(frame, ["x", "k", "c", "b"])
    assert _plain(stats)
    assert json.loads(json.dumps(stats)) == stats
    assert feature_stats(frame, ["x", "k", "c", "b"]) == stats
    x = stats["x"]
    assert x["kind"] == "numeric" and x["count"] == 5000 and x["missing"] == 0
    assert len(x["edges"]) == BINS + 1 and len(x["proportions"]) == BINS
    assert x["edges"] == sorted(x["edges"]) and x["edges"][0] == x["min"] and x["edges"][-1] == x["max"]
    assert math.isclose(sum(x["proportions"]), 1.0)
    assert all(abs(p - 0.1) < 0.01 for p in x["proportions"])  # deciles: ~10% each
    assert math.isclose(x["mean"], frame["x"].mean()) and math.isclose(x["std"], frame["x"].std())
    c = stats["c"]
    assert c["kind"] == "categorical" and set(c["frequencies"]) == {"red", "green", "blue"}
    assert math.isclose(sum(c["frequencies"].values()), 1.0) and c["count"] == 5000
    assert stats["b"]["kind"] == "categorical"  # booleans are counted, not binned
    assert set(stats["b"]["frequencies"]) == {"True", "False"}


def test_stats_count_missing_values_and_empty_columns():
    df = pd.DataFrame({"x": [1.0, np.nan, 3.0, np.nan, 5.0], "e": [np.nan] * 5,
                       "c": ["a", None, "a", "b", None]})
    stats = feature_stats(df, ["x", "e", "c"])
    assert (stats["x"]["count"], stats["x"]["missing"]) == (3, 2)
    assert stats["e"] == {"kind": "numeric", "count": 0, "missing": 5, "mean": None, "std": None,
                          "min": None, "max": None, "edges": [], "proportions": []}
    assert stats["c"]["missing"] == 2 and stats["c"]["frequencies"] == {"a": 2 / 3, "b": 1 / 3}
    assert json.loads(json.dumps(stats)) == stats


def test_stats_of_an_unknown_feature_is_a_data_error(frame):
    with pytest.raises(DataError, match="'nope' is not a column"):
        feature_stats(frame, ["nope"])


def test_identical_data_has_no_drift(frame):
    stats = feature_stats(frame, ["x", "k", "c", "b"])
    for col in ("x", "k"):
        assert numeric_psi(stats[col], frame[col]) == pytest.approx(0.0, abs=1e-12)
        assert numeric_ks(stats[col], frame[col]) == pytest.approx(0.0, abs=1e-12)
    for col in ("c", "b"):
        assert categorical_psi(stats[col], frame[col]) == pytest.approx(0.0, abs=1e-12)


def test_a_new_sample_of_the_same_distribution_is_below_thresholds(frame):
    stats = feature_stats(frame, ["x"])
    fresh = pd.Series(np.random.default_rng(1).normal(10.0, 2.0, 2000))
    assert numeric_psi(stats["x"], fresh) < 0.05
    assert numeric_ks(stats["x"], fresh) < 0.05


def test_shifted_data_drifts(frame):
    stats = feature_stats(frame, ["x", "k"])
    shifted = frame["x"] + 2.0  # one standard deviation
    assert numeric_psi(stats["x"], shifted) > 0.5
    assert numeric_ks(stats["x"], shifted) > 0.3
    # a discrete feature whose values change share
    k = pd.Series(np.where(np.arange(5000) % 10 < 8, 2.0, 0.0))
    assert numeric_psi(stats["k"], k) > 0.5 and numeric_ks(stats["k"], k) > 0.2


def test_values_outside_the_training_range_fall_in_the_outer_bins(frame):
    stats = feature_stats(frame, ["x"])["x"]
    above = pd.Series(np.full(100, stats["max"] + 100.0))
    assert numeric_ks(stats, above) == pytest.approx(sum(stats["proportions"][:-1]))
    below = pd.Series(np.full(100, stats["min"] - 100.0))
    assert numeric_ks(stats, below) == pytest.approx(1 - stats["proportions"][0])
    assert math.isfinite(numeric_psi(stats, above)) and numeric_psi(stats, above) > 5


def test_ks_approximation_is_within_one_bin_of_the_exact_statistic(frame):
    stats = feature_stats(frame, ["x"])["x"]
    rng = np.random.default_rng(2)
    for shift, scale in ((0.0, 1.0), (0.3, 1.0), (1.0, 1.0), (0.0, 1.6), (-3.0, 0.5)):
        new = rng.normal(10.0 + shift * 2.0, 2.0 * scale, 3000)
        approx = numeric_ks(stats, pd.Series(new))
        exact = _ks_2samp(frame["x"].to_numpy(), new)
        assert approx <= exact + 1e-9  # a lower bound...
        assert exact - approx <= max(stats["proportions"]) + 1e-9  # ...within one bin share


def _ks_2samp(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.concatenate([a, b])
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def test_categorical_new_category_and_share_change(frame):
    stats = feature_stats(frame, ["c"])["c"]
    unseen = frame["c"].where(np.arange(len(frame)) % 2 == 0, "purple")  # half a new colour
    assert categorical_psi(stats, unseen) > 1.0
    reweighted = pd.Series(["blue"] * 600 + ["green"] * 300 + ["red"] * 100)
    assert categorical_psi(stats, reweighted) > 0.5
    # a handful of unseen values in a large sample is not drift
    few = pd.concat([frame["c"], pd.Series(["purple"] * 3)], ignore_index=True)
    assert categorical_psi(stats, few) < 0.01


def test_missing_values_count_for_psi_but_not_for_ks(frame):
    stats = feature_stats(frame, ["x", "c"])
    holes = frame["x"].copy()
    holes[::2] = np.nan  # same values, half of them gone
    assert numeric_psi(stats["x"], holes) > 1.0
    assert numeric_ks(stats["x"], holes) < 0.05
    assert numeric_ks(stats["x"], pd.Series([np.nan] * 10)) == 1.0
    c = frame["c"].copy()
    c[::2] = None
    assert categorical_psi(stats["c"], c) > 1.0


def test_psi_floors_empty_bins():
    assert math.isfinite(psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]))
    assert psi([0.0, 1.0], [0.0, 1.0]) == 0.0
    with pytest.raises(ValueError, match="2 expected shares but 3"):
        psi([0.5, 0.5], [0.3, 0.3, 0.4])


def test_detect_drift_thresholds_and_methods(frame):
    stats = feature_stats(frame, ["x", "k", "c"])
    new = frame.assign(x=frame["x"] + 2.0)
    out = {d.feature: d for d in detect_drift(new, stats, ["x", "k", "c", "other"], DriftSpec())}
    assert set(out) == {"x", "k", "c"}  # no statistics for "other": not checked
    assert out["x"].method == "psi" and out["x"].drifted and out["x"].threshold == 0.2
    assert not out["k"].drifted and not out["c"].drifted

    ks = DriftSpec(method="ks", threshold=0.1, features={"x": 0.9})
    out = {d.feature: d for d in detect_drift(new, stats, ["x", "k", "c"], ks)}
    assert out["x"].method == "ks" and out["x"].threshold == 0.9 and not out["x"].drifted
    assert out["k"].method == "ks" and out["k"].threshold == 0.1
    # a categorical feature has no order: PSI, with the PSI threshold, not the KS one
    assert out["c"].method == "psi" and out["c"].threshold == CATEGORICAL_PSI_THRESHOLD


def test_detect_drift_skips_columns_the_data_lacks(frame):
    stats = feature_stats(frame, ["x", "c"])
    assert [d.feature for d in detect_drift(frame[["x"]], stats, ["x", "c"], DriftSpec())] == ["x"]


def test_numeric_baseline_with_text_values_treats_them_as_missing(frame):
    stats = feature_stats(frame, ["x"])["x"]
    text = pd.Series(["oops"] * 100)
    assert numeric_psi(stats, text) > 5 and numeric_ks(stats, text) == 1.0
