"""The server's predictor against the models' own predict/predict_proba: the same bits, always."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_wine
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from cd4ml.serve.predictor import ModelMismatch, Predictor, probe_rows, quiet_positional
from cd4ml.serve.schema import fields_of
from cd4ml.stages.train import input_signature


def rows_of(frame: pd.DataFrame) -> list[list]:
    """Checked rows as the server makes them: Python values, None for missing."""
    return [[None if (isinstance(v, float) and math.isnan(v)) else v for v in r]
            for r in frame.astype(object).itertuples(index=False, name=None)]


def native(values) -> list:
    return [v.item() if hasattr(v, "item") else v for v in values]


def predictor_for(model, X: pd.DataFrame, task: str, classes=None) -> Predictor:
    signature = input_signature(X, "target", classes)
    return Predictor(model, fields_of(signature), task)


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True, as_frame=True)
    return X, y


def assert_same_classification(p: Predictor, model, X: pd.DataFrame) -> None:
    out = p.predict(rows_of(X))
    assert out.predictions == native(model.predict(X))
    proba = model.predict_proba(X)
    assert [list(d.values()) for d in out.probabilities] == proba.tolist()
    assert list(out.probabilities[0]) == [str(c) for c in model.classes_]


def test_forest_shortcut_gives_the_forests_own_bits(wine):
    X, y = wine
    model = RandomForestClassifier(n_estimators=30, max_depth=4, random_state=0).fit(X, y)
    p = predictor_for(model, X, "classification", sorted(y.unique().tolist()))
    assert p.shortcut and p.positional and not p.needs_frame
    assert_same_classification(p, model, X)
    for i in (0, 77, 177):  # one row at a time, as the server mostly sees them
        assert_same_classification(p, model, X.iloc[[i]])


def test_columns_are_fed_in_the_fitted_order_whatever_the_signature_order(wine):
    X, y = wine
    model = RandomForestClassifier(n_estimators=10, random_state=1).fit(X, y)
    reordered = X[list(reversed(X.columns))]
    p = predictor_for(model, reordered, "classification")
    out = p.predict(rows_of(reordered))
    assert out.predictions == native(model.predict(X))
    assert [list(d.values()) for d in out.probabilities] == model.predict_proba(X).tolist()


def test_regression_forest_shortcut_and_positional_models():
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    forest = ExtraTreesRegressor(n_estimators=20, random_state=0).fit(X, y)
    p = predictor_for(forest, X, "regression")
    assert p.shortcut
    out = p.predict(rows_of(X))
    assert out.predictions == forest.predict(X).tolist() and out.probabilities is None

    boosted = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X, y)
    p = predictor_for(boosted, X, "regression")
    assert not p.shortcut and p.positional
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet_positional()  # what the server does for a positional predictor
        assert p.predict(rows_of(X)).predictions == boosted.predict(X).tolist()


def test_a_model_fitted_on_an_array_is_not_positional(wine):
    X, y = wine
    model = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]).fit(X.to_numpy(), y)
    p = predictor_for(model, X, "classification")
    assert not p.shortcut and not p.positional
    out = p.predict(rows_of(X))
    assert out.predictions == native(model.predict(X.to_numpy()))
    assert [list(d.values()) for d in out.probabilities] == model.predict_proba(X.to_numpy()).tolist()


def test_text_features_go_in_a_dataframe_and_the_pipeline_forest_still_takes_the_shortcut(wine):
    X, y = wine
    X = X.copy()
    X["region"] = np.where(X["alcohol"] > 13, "north", "south")
    X.loc[X.index[::9], "region"] = np.nan  # missing text, as pandas reads an empty CSV cell
    encode = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["region"])],
        remainder="passthrough", verbose_feature_names_out=False)
    model = Pipeline([("encode", encode),
                      ("model", RandomForestClassifier(n_estimators=15, random_state=0))]).fit(X, y)
    p = predictor_for(model, X, "classification")
    assert p.needs_frame and not p.positional and p.shortcut
    assert_same_classification(p, model, X)
    unseen = X.iloc[[3]].assign(region="west")  # unknown category: encoded as all zeros
    assert_same_classification(p, model, unseen)


def test_missing_numbers_leave_the_shortcut_for_the_models_own_rules(wine):
    X, y = wine
    X = X.copy()
    X.loc[X.index[::7], "magnesium"] = np.nan
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    p = predictor_for(model, X, "classification")
    assert p.fields[list(X.columns).index("magnesium")].nullable
    assert p.shortcut
    quiet_positional()
    assert_same_classification(p, model, X)


def test_the_load_time_check_refuses_a_shortcut_that_differs(wine):
    X, y = wine
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    p = predictor_for(model, X, "classification")
    real = p._fast
    assert p._agrees(rows_of(X.head(11)))

    def off_by_a_bit(M):
        labels, proba = real(M)
        return labels, np.nextafter(proba, 2.0)

    p._fast = off_by_a_bit
    assert not p._agrees(rows_of(X.head(11)))


def test_a_forest_subclass_is_not_trusted_with_the_shortcut(wine):
    class Tweaked(RandomForestClassifier):
        def predict(self, X):
            return super().predict(X)

    X, y = wine
    model = Tweaked(n_estimators=5, random_state=0).fit(X, y)
    p = predictor_for(model, X, "classification")
    assert not p.shortcut
    quiet_positional()
    assert_same_classification(p, model, X)


def test_a_signature_that_does_not_match_the_model_is_refused(wine):
    X, y = wine
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    renamed = X.rename(columns={"proline": "prolin"})
    with pytest.raises(ModelMismatch, match="fitted on features"):
        predictor_for(model, renamed, "classification")
    unnamed = DecisionTreeClassifier(random_state=0).fit(X.to_numpy()[:, :3], y)
    with pytest.raises(ModelMismatch, match="takes 3 features but model.json's signature lists 13"):
        predictor_for(unnamed, X, "classification")


def test_probe_rows_span_the_training_statistics():
    fields = fields_of({"inputs": [{"name": "a", "dtype": "float"}, {"name": "b", "dtype": "int"},
                                   {"name": "c", "dtype": "str"}, {"name": "d", "dtype": "bool"}]})
    stats = {"a": {"edges": [0.0, 0.5, 1.0]}, "b": {"edges": [1.2, 3.7]},
             "c": {"frequencies": {"x": 0.5, "y": 0.5}}}
    rows = probe_rows(fields, stats, n=4)
    assert rows == [[0.0, 1, "x", False], [0.5, 4, "y", True], [1.0, 1, "x", False],
                    [0.0, 4, "y", True]]
