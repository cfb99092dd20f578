"""Metric functions on tiny data: defined where they can be, NaN where they cannot, never a
warning (pytest turns warnings into errors here)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cd4ml.spec import CLASSIFICATION_METRICS, REGRESSION_METRICS
from cd4ml.stages.evaluate import (
    MISSING,
    EvaluationResult,
    confusion,
    evaluation_from_store,
    roc_auc_ovr,
    score,
    slice_values,
)
from cd4ml.store import Store

C, R = CLASSIFICATION_METRICS, REGRESSION_METRICS


def isnan(v):
    return isinstance(v, float) and math.isnan(v)


# ----------------------------------------------------------------------------- classification


def test_perfect_classifier_scores_one_everywhere():
    y = [0, 1, 2, 0, 1, 2]
    proba = np.eye(3)[y]
    out = score("classification", C, y, y, proba, [0, 1, 2])
    assert out == {m: 1.0 for m in C}
    assert all(type(v) is float for v in out.values())


def test_known_values():
    y_true = [0, 0, 1, 1]
    y_pred = [0, 1, 1, 1]
    out = score("classification", ("accuracy", "precision_macro", "recall_macro", "f1_macro"),
                y_true, y_pred)
    assert out["accuracy"] == 0.75
    assert out["precision_macro"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert out["recall_macro"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_only_the_metrics_asked_for():
    assert set(score("classification", ["accuracy"], [1, 0], [1, 1])) == {"accuracy"}
    assert set(score("regression", ["mae", "r2"], [1.0, 2.0], [1.0, 2.0])) == {"mae", "r2"}


def test_single_class_slice_has_nan_roc_auc_and_defined_accuracy():
    y = [1, 1, 1]
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    out = score("classification", C, y, [1, 0, 1], proba, [0, 1])
    assert isnan(out["roc_auc"])
    assert out["accuracy"] == pytest.approx(2 / 3)
    # class 0 is predicted once but never true: its precision is 0, not a crash or a warning
    assert out["precision_macro"] == pytest.approx(0.5)


def test_empty_rows_are_nan_for_every_metric():
    empty = np.array([], dtype=int)
    assert all(isnan(v) for v in score("classification", C, empty, empty, np.empty((0, 2)), [0, 1]).values())
    assert all(isnan(v) for v in score("regression", R, [], []).values())


def test_roc_auc_without_probabilities_is_nan():
    assert isnan(score("classification", ["roc_auc"], [0, 1], [0, 1])["roc_auc"])
    assert isnan(score("classification", ["roc_auc"], [0, 1], [0, 1], np.eye(2), None)["roc_auc"])


def test_roc_auc_equals_sklearn_ovr_macro_when_every_class_is_present():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 60)
    proba = rng.random((60, 3))
    proba /= proba.sum(axis=1, keepdims=True)
    assert roc_auc_ovr(y, proba, [0, 1, 2]) == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro"))


def test_binary_roc_auc_is_the_usual_auc():
    from sklearn.metrics import roc_auc_score

    y = np.array([0, 0, 1, 1, 0, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.7])
    assert roc_auc_ovr(y, np.c_[1 - p1, p1], [0, 1]) == pytest.approx(roc_auc_score(y, p1))


def test_roc_auc_on_a_slice_with_two_of_three_classes():
    y = np.array(["a", "a", "b", "b"])
    proba = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]])
    # class a vs rest and class b vs rest are both perfectly ranked; class c has no positive
    assert roc_auc_ovr(y, proba, ["a", "b", "c"]) == 1.0


def test_string_labels():
    out = score("classification", ("accuracy", "f1_macro"), ["x", "y", "y"], ["x", "y", "x"])
    assert out["accuracy"] == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- regression


def test_regression_known_values():
    out = score("regression", R, [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0])
    assert out["mae"] == pytest.approx(0.5)
    assert out["rmse"] == pytest.approx(1.0)
    assert out["r2"] == pytest.approx(1 - 4 / 5)


def test_r2_of_one_row_or_a_constant_target_is_nan():
    one = score("regression", R, [3.0], [2.0])
    assert isnan(one["r2"]) and one["mae"] == 1.0 and one["rmse"] == 1.0
    constant = score("regression", R, [5.0, 5.0, 5.0], [4.0, 5.0, 6.0])
    assert isnan(constant["r2"]) and constant["mae"] == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- helpers


def test_confusion_lists_the_model_classes_then_unseen_labels():
    labels, cm = confusion(np.array([0, 1, 3]), np.array([0, 0, 1]), [0, 1, 2])
    assert labels == [0, 1, 2, 3]
    assert cm == [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]
    assert all(type(x) is int for row in cm for x in row)


def test_confusion_without_known_classes_sorts_the_labels():
    labels, cm = confusion(["b", "a"], ["b", "b"], None)
    assert labels == ["a", "b"] and cm == [[0, 1], [0, 1]]


def test_slice_values_are_text_with_missing_named():
    values = slice_values(pd.Series([1, None, 2.5, "x", float("nan")], dtype=object))
    assert list(values) == ["1", MISSING, "2.5", "x", MISSING]


# ----------------------------------------------------------------------------- from the store


def test_evaluation_round_trips_through_the_store(tmp_path):
    from cd4ml.spec import load_spec

    (tmp_path / "d.csv").write_text("x,band,y\n1,low,0\n2,high,1\n")
    (tmp_path / "p.yaml").write_text(
        "name: toy\ndata: {path: d.csv, target: y, slices: [band]}\n"
        "model: {task: classification, estimator: 'sklearn.linear_model:LogisticRegression'}\n"
        "metrics: [accuracy, roc_auc]\nallow_no_gates: true\n")
    spec = load_spec(tmp_path / "p.yaml")
    with Store("sqlite://") as store:
        run = store.start_run("toy")
        model = store.register_model("toy", run.id, "classification", "/x", "0" * 64, {}, {})
        assert evaluation_from_store(store, run.id, spec, model) is None
        base = [
            {"name": "accuracy", "value": 0.5, "scope": "candidate", "model_version": 1},
            {"name": "roc_auc", "value": float("nan"), "scope": "candidate", "model_version": 1},
            {"name": "accuracy", "value": 0.25, "scope": "candidate", "slice": "band",
             "slice_value": "low", "model_version": 1},
            {"name": "accuracy", "value": 0.75, "scope": "production", "model_version": 7},
            {"name": "loss", "value": 3.0, "scope": "candidate", "step": 2},  # tracking, ignored
        ]
        store.record_metrics(run.id, base)
        # a second evaluation, without production this time: it alone is the latest
        store.record_metrics(run.id, [
            {"name": "accuracy", "value": 0.6, "scope": "candidate", "model_version": 1}])
        got = evaluation_from_store(store, run.id, spec, model)
        assert got == EvaluationResult(
            model_version=1, metrics={"accuracy": 0.6}, slices={}, production_version=None,
            production_metrics=None, production_slices=None, confusion_matrix=None, labels=None,
            test_rows=0)

        run2 = store.start_run("toy")
        store.record_metrics(run2.id, base)
        model2 = store.register_model("toy", run2.id, "classification", "/x", "1" * 64, {}, {})
        assert model2.version == 2
        assert evaluation_from_store(store, run2.id, spec, model2) is None  # rows are of version 1
        got = evaluation_from_store(store, run2.id, spec, model)
        assert got.metrics["accuracy"] == 0.5 and isnan(got.metrics["roc_auc"])
        assert got.slices == {"band": {"low": {"accuracy": 0.25}}}
        assert got.production_version == 7 and got.production_metrics == {"accuracy": 0.75}
        assert got.production_slices == {}
