"""One model call per classification request: labels read off predict_proba only where that
was checked to equal predict, else both are called (the answers never change)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_wine
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cd4ml.serve import predictor as predictor_module
from cd4ml.serve.predictor import Predictor, quiet_positional
from cd4ml.serve.schema import fields_of
from cd4ml.stages.train import input_signature
from tests.unit.test_serve_predictor import native, rows_of


class Calls:
    """Counts calls to a model's predict and predict_proba, on the instance."""

    def __init__(self, model):
        self.n = {"predict": 0, "predict_proba": 0}
        for name in self.n:
            original = getattr(model, name)

            def counted(X, _name=name, _original=original):
                self.n[_name] += 1
                return _original(X)
            setattr(model, name, counted)


def stats_of(X: pd.DataFrame) -> dict:
    """What model.json records of the training data, for the probe rows."""
    return {c: {"edges": np.quantile(X[c], np.linspace(0, 1, 11)).tolist()} if X[c].dtype.kind in "fiu"
            else {"frequencies": X[c].value_counts().to_dict()} for c in X}


def predictor(model, X, y) -> Predictor:
    signature = input_signature(X, "target", sorted(y.unique().tolist()))
    return Predictor(model, fields_of(signature), "classification", stats_of(X))


@pytest.fixture(autouse=True)
def _positional():
    with warnings.catch_warnings():
        quiet_positional()  # what the server does for a positional predictor
        yield


@pytest.fixture(scope="module")
def wine():
    return load_wine(return_X_y=True, as_frame=True)


def penguins_like(n: int = 300) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
                      "bill": rng.normal(44, 5, n), "mass": rng.normal(4200, 800, n)})
    y = pd.Series(np.where(X["bill"] + (X["island"] == "Dream") * 4 > 45, "Gentoo", "Adelie"))
    return X, y


@pytest.mark.parametrize("family", ["hgb", "pipeline"])
def test_one_call_gives_the_labels_and_probabilities_of_two(wine, family):
    if family == "hgb":
        X, y = wine
        model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    else:
        X, y = penguins_like()
        model = Pipeline([("prep", ColumnTransformer([("cat", OneHotEncoder(), ["island"]),
                                                      ("num", StandardScaler(), ["bill", "mass"])])),
                          ("lr", LogisticRegression())]).fit(X, y)
    p = predictor(model, X, y)
    assert p.single_call
    expected_labels, expected_proba = native(model.predict(X)), model.predict_proba(X).tolist()
    calls = Calls(model)
    out = p.predict(rows_of(X))
    assert calls.n == {"predict": 0, "predict_proba": 1}
    assert out.predictions == expected_labels
    assert [list(d.values()) for d in out.probabilities] == expected_proba


class Thresholded(LogisticRegression):
    """A tuned decision threshold: predict is not the argmax of predict_proba."""

    def predict(self, X):
        return self.classes_.take((self.predict_proba(X)[:, 1] > 0.2).astype(int))


def test_a_model_whose_argmax_is_not_its_predict_falls_back_to_two_calls(monkeypatch):
    X, y = penguins_like()
    X = X[["bill", "mass"]]
    model = Thresholded(max_iter=500).fit(X, y)
    assert predictor(model, X, y).single_call is False  # not a trusted class
    # trusted by class, the load-time probe rows must still catch it
    monkeypatch.setitem(predictor_module._ARGMAX_CLASSIFIERS, __name__, ("Thresholded",))
    p = predictor(model, X, y)
    assert p.single_call is False
    calls = Calls(model)
    out = p.predict(rows_of(X))
    assert calls.n["predict"] == 1  # (its predict calls predict_proba itself)
    assert out.predictions == native(model.predict(X))
    assert out.predictions != native(model.classes_.take(model.predict_proba(X).argmax(axis=1)))


def test_a_replaced_predict_on_the_instance_is_not_trusted(wine):
    X, y = wine
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, y)
    model.predict = lambda X: np.full(len(X), model.classes_[0])
    assert predictor(model, X, y).single_call is False
