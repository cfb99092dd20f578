"""The compiled (ONNX) serving path: conversion, parity, the predictor's interface, the load check.

Four families, classification and regression: a linear model, tree ensembles (random forest,
histogram and classic gradient boosting), k-NN and SVM, and a pipeline over mixed columns
(text categories one-hot encoded, numbers scaled, integers as they are). Each is converted by
:func:`cd4ml.serve.compile.compile_model` and must then answer held-out rows as scikit-learn does
under the parity rule; what cannot be converted, or does not agree, is refused with a reason.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_wine, make_classification
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVR

from cd4ml import artifacts
from cd4ml.serve import compiled
from cd4ml.serve.compile import Compiled, compile_model
from cd4ml.serve.compiled import TOLERANCE, CompiledMismatch, OnnxPredictor, Tolerance, compare
from cd4ml.serve.predictor import Predictor, load, quiet_positional
from cd4ml.serve.schema import fields_of
from cd4ml.stages.drift import feature_stats
from cd4ml.stages.train import input_signature
from tests.unit.test_serve_predictor import rows_of


@pytest.fixture(autouse=True)
def _positional():
    with warnings.catch_warnings():
        quiet_positional()  # what the server does for a positional predictor
        yield


def penguins(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
        "sex": rng.choice(["male", "female"], n),
        "bill_mm": rng.normal(44, 5, n).round(1),
        "flipper_mm": rng.integers(170, 230, n),
        "mass_g": rng.normal(4200, 800, n)})
    y = np.where(X.bill_mm + (X.island == "Dream") * 3 + rng.normal(0, 2, n) > 45, "Adelie", "Gentoo")
    y[X.flipper_mm > 215] = "Chinstrap"
    return X, pd.Series(y, name="species")


def mixed_pipeline():
    columns = ColumnTransformer([
        ("text", OneHotEncoder(handle_unknown="ignore"), ["island", "sex"]),
        ("numbers", StandardScaler(), ["bill_mm", "flipper_mm", "mass_g"])])
    return make_pipeline(columns, LogisticRegression(max_iter=2000))


def synthetic(n: int = 3000):
    X, y = make_classification(n, 12, n_informative=6, random_state=0)
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(12)])
    X.loc[::9, "x3"] = np.nan  # HistGradientBoosting's missing-value branches
    return X, pd.Series(y, name="y")


def wine():
    return load_wine(return_X_y=True, as_frame=True)


def diabetes():
    return load_diabetes(return_X_y=True, as_frame=True)


FAMILIES = {
    # name: (data, model, task)
    "linear-classifier": (wine, lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                          "classification"),
    "linear-regressor": (diabetes, lambda: Ridge(), "regression"),
    "random-forest": (wine, lambda: RandomForestClassifier(50, random_state=0), "classification"),
    "forest-regressor": (diabetes, lambda: RandomForestRegressor(30, random_state=0), "regression"),
    "hist-gradient-boosting": (synthetic, lambda: HistGradientBoostingClassifier(max_iter=40, random_state=0),
                               "classification"),
    "hist-gradient-boosting-regressor": (diabetes, lambda: HistGradientBoostingRegressor(max_iter=50, random_state=0),
                                         "regression"),
    "gradient-boosting-regressor": (diabetes, lambda: GradientBoostingRegressor(random_state=0), "regression"),
    "knn-classifier": (wine, lambda: make_pipeline(StandardScaler(), KNeighborsClassifier()), "classification"),
    "knn-regressor": (diabetes, lambda: KNeighborsRegressor(), "regression"),
    "svm-regressor": (diabetes, lambda: SVR(), "regression"),
    "mixed-columns": (penguins, mixed_pipeline, "classification"),
}


def fitted(family: str):
    data, make, task = FAMILIES[family]
    X, y = data()
    model = make().fit(X, y)
    classes = sorted(y.unique().tolist()) if task == "classification" else None
    fields = fields_of(input_signature(X, y.name or "target", classes))
    stats = feature_stats(X, list(X.columns))
    return model, X, fields, task, stats


@dataclass(frozen=True)
class Case:
    name: str
    model: Any
    fields: tuple
    task: str
    stats: dict
    held_out: list
    result: Compiled


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request) -> Case:
    model, X, fields, task, stats = fitted(request.param)
    held_out = rows_of(X.sample(min(len(X), 300), random_state=1))
    return Case(request.param, model, fields, task, stats, held_out,
                compile_model(model, fields, task, stats, held_out, "0" * 64))


def test_every_family_converts_and_keeps_parity(family):
    c = family
    name, model, fields, task, stats, held_out, result = (
        c.name, c.model, c.fields, c.task, c.stats, c.held_out, c.result)
    assert result.passed, f"{name}: {result.report['reason']}"
    report = result.report
    assert report["runtime"] == "onnx" and report["tolerance"] == {"rtol": 1e-5, "atol": 1e-5}
    assert report["held_out_rows"] == len(held_out) and report["probe_rows"] >= 11
    assert report["max_abs_diff"] <= 1e-3  # (the rule itself is relative for large values)
    # the compiled predictor answers as the model does, through the predictor's interface
    onnx = OnnxPredictor(result.graph, fields, report)
    sk = Predictor(model, fields, task, stats)
    got, want = onnx.predict(held_out), sk.predict(held_out)
    if task == "classification":
        assert got.predictions == want.predictions
        assert got.keys == want.keys
        assert np.allclose(got.proba, want.proba, rtol=0, atol=1e-5)
        json.loads(got.probabilities_json())
    else:
        assert got.proba is None
        assert np.allclose(got.predictions, want.predictions, rtol=1e-5, atol=1e-5)
        assert all(type(v) is float for v in got.predictions)


def test_hist_gradient_boosting_keeps_its_float64_thresholds(family):
    if not family.name.startswith("hist-gradient-boosting"):
        pytest.skip("HistGradientBoosting only")
    assert family.result.report["layout"]["dtype"] == "float64", family.result.report["reason"]
    # a row on a split threshold and one a float32 rounding away: scikit-learn's branches
    model, fields = family.model, family.fields
    node = next(n for trees in model._predictors for t in trees for n in t.nodes if not n["is_leaf"])
    base = list(family.held_out[0])
    rows = []
    for value in (node["num_threshold"], np.nextafter(node["num_threshold"], np.inf),
                  float(np.float32(node["num_threshold"]))):
        row = list(base)
        row[node["feature_idx"]] = float(value)
        rows.append(row)
    onnx = OnnxPredictor(family.result.graph, fields, family.result.report)
    want = Predictor(model, fields, family.task, family.stats).predict(rows)
    got = onnx.predict(rows)
    assert got.predictions == want.predictions or np.allclose(
        got.predictions, want.predictions, rtol=1e-5, atol=1e-5)
    if got.proba is not None:
        assert np.allclose(got.proba, want.proba, rtol=0, atol=1e-5)


def test_mixed_columns_are_one_input_each(family):
    if family.name != "mixed-columns":
        pytest.skip("the pipeline over mixed columns only")
    layout = family.result.report["layout"]
    assert layout["kind"] == "columns"
    assert layout["types"][:2] == ["str", "str"] and "int64" in layout["types"]


def test_parity_failure_refuses_with_the_reason(monkeypatch):
    model, X, fields, task, stats = fitted("random-forest")
    # a tolerance no float32 graph can meet: the verdict is scikit-learn, and the build says why
    monkeypatch.setattr(compiled, "TOLERANCE", Tolerance(0.0, 0.0))
    monkeypatch.setattr("cd4ml.serve.compile.compare",
                        lambda *a, **k: compare(*a, **k, tolerance=Tolerance(0.0, 0.0)))
    result = compile_model(model, fields, task, stats, rows_of(X.head(50)))
    assert not result.passed and result.report["runtime"] == "sklearn"
    assert "parity failed on row" in result.report["reason"]
    assert "float32" in result.report["reason"] and "float64" in result.report["reason"]


def test_an_unsupported_model_falls_back_with_the_reason():
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Odd(ClassifierMixin, BaseEstimator):  # no converter is registered for it
        def fit(self, X, y):
            self.classes_ = np.unique(y)
            self.n_features_in_ = X.shape[1]
            return self

        def predict(self, X):
            return np.full(len(X), self.classes_[0])

    X, y = wine()
    fields = fields_of(input_signature(X, "target", sorted(y.unique().tolist())))
    result = compile_model(Odd().fit(X.to_numpy(), y), fields, "classification",
                           feature_stats(X, list(X.columns)), rows_of(X.head(5)))
    assert not result.passed and "skl2onnx cannot convert it" in result.report["reason"]


def nullable_text(literal_nan: bool = False):
    """The penguins with ``sex`` sometimes missing, fitted as cd4ml's training does (one-hot
    encoding in which a missing value is a category of its own); with ``literal_nan``, a text
    "nan" that is a real category too."""
    from cd4ml.stages.train import _with_encoder

    X, y = penguins()
    X["sex"] = X["sex"].astype(object)
    X.loc[::5, "sex"] = np.nan  # as pandas reads a missing text
    if literal_nan:
        X.loc[1::7, "sex"] = "nan"
    model = _with_encoder(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                          ["island", "sex"]).fit(X, y)
    fields = fields_of(input_signature(X, "species", sorted(y.unique().tolist())))
    return model, X, fields, feature_stats(X, list(X.columns))


def test_nullable_text_is_compiled_with_missing_values_as_their_own_category():
    model, X, fields, stats = nullable_text()
    assert [f.nullable for f in fields if f.name == "sex"] == [True]
    rows = [[None if isinstance(v, float) and math.isnan(v) else v for v in r]
            for r in rows_of(X.head(60))]
    assert any(r[1] is None for r in rows)
    result = compile_model(model, fields, "classification", stats, rows)
    assert result.passed, result.report["reason"]
    onnx = OnnxPredictor(result.graph, fields, result.report)
    sk = Predictor(model, fields, "classification", stats)
    # missing, the text "nan" (unknown to the encoder: all zeros) and a known text
    probe = [["Dream", None, 44.0, 200, 4000.0], ["Dream", "nan", 44.0, 200, 4000.0],
             ["Dream", "male", 44.0, 200, 4000.0]]
    got, want = onnx.predict(probe), sk.predict(probe)
    assert got.predictions == want.predictions
    assert compare(want.predictions, got.predictions, want.proba, got.proba,
                   classifier=True).passed
    assert not compare(got.proba[0], got.proba[1], classifier=False).passed  # "nan" is not missing


def test_a_learnt_nan_text_is_not_taken_for_a_missing_value():
    model, X, fields, stats = nullable_text(literal_nan=True)
    rows = [[None if isinstance(v, float) and math.isnan(v) else v for v in r]
            for r in rows_of(X.head(60))]
    result = compile_model(model, fields, "classification", stats, rows)
    assert not result.passed and "parity failed on row" in result.report["reason"]


def test_compare_rule():
    assert compare([1, 2], [1, 2], [[0.5, 0.5]] * 2, [[0.500001, 0.499999]] * 2,
                   classifier=True).passed
    assert not compare([1, 2], [1, 3], classifier=True).passed
    assert not compare([1], [1.0], classifier=True).passed  # a label of another type
    assert not compare([1], [1], [[0.5, 0.5]], [[0.51, 0.49]], classifier=True).passed
    assert compare([1000.0], [1000.005], classifier=False).passed  # relative for large values
    assert not compare([1.0], [1.001], classifier=False).passed
    assert not compare([1.0], [1.0, 2.0], classifier=False).passed
    assert compare([math.nan], [math.nan], classifier=False).passed
    assert str(TOLERANCE).startswith("labels identical")


def model_dir(tmp_path, family):
    """An artifact directory as the onnx image holds it: model.pkl, model.json, model.onnx,
    compiled.json."""
    directory, sha = artifacts.save(tmp_path, "p", family.model)
    signature = {"inputs": [{"name": f.name, "dtype": f.dtype, "nullable": f.nullable}
                            for f in family.fields], "target": "y", "classes": None}
    artifacts.write_meta(directory, artifacts.ArtifactMeta("p", family.task, sha, signature,
                                                           family.stats, 1))
    report = {**family.result.report, "model_sha256": sha}
    (directory / compiled.ONNX_FILE).write_bytes(family.result.graph)
    (directory / compiled.REPORT_FILE).write_text(json.dumps(report))
    return directory, sha, report


def test_load_prefers_the_compiled_model_and_checks_it(tmp_path, family):
    if family.name not in ("mixed-columns", "gradient-boosting-regressor"):
        pytest.skip("two families suffice for the loader")
    fields, result = family.fields, family.result
    directory, sha, report = model_dir(tmp_path, family)
    p = load(directory, fields, sha)
    assert p.runtime == "onnx" and p.single_call and not p.shortcut
    # compiled.json from another model.pkl: refused
    (directory / compiled.REPORT_FILE).write_text(json.dumps({**report, "model_sha256": "f" * 64}))
    with pytest.raises(CompiledMismatch, match="compiled from model sha256"):
        load(directory, fields, sha)
    # a graph that is not the recorded one: refused
    (directory / compiled.REPORT_FILE).write_text(json.dumps(report))
    (directory / compiled.ONNX_FILE).write_bytes(result.graph + b"\0")
    with pytest.raises(CompiledMismatch, match="does not match the recorded"):
        load(directory, fields, sha)
    # probe answers that the graph no longer gives: refused at load
    (directory / compiled.ONNX_FILE).write_bytes(result.graph)
    probe = report["probe"]
    bad = [(v + 1 if isinstance(v, float) else "nope") for v in probe["predictions"]]
    (directory / compiled.REPORT_FILE).write_text(json.dumps({**report, "probe": {**probe, "predictions": bad}}))
    with pytest.raises(CompiledMismatch, match="no longer answers"):
        load(directory, fields, sha)
    # no compiled.json: scikit-learn, as before
    (directory / compiled.REPORT_FILE).unlink()
    assert load(directory, fields, sha).runtime == "sklearn"


def test_bad_values_are_a_value_error(family):
    if family.name != "random-forest":
        pytest.skip("one family suffices")
    onnx = OnnxPredictor(family.result.graph, family.fields, family.result.report)
    with pytest.raises(ValueError):
        onnx.predict([[1.0] * (len(family.fields) - 1)])
