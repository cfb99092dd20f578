"""The model server's request path, piece by piece, before and after issue 19, in one process.

For four model families (the wine RandomForest, HistGradientBoosting on 100,000 x 30 synthetic
rows, a penguins-like Pipeline(ColumnTransformer(OneHot, Scaler), LogisticRegression), and
GradientBoostingRegressor on diabetes), at 1 and 1,000 rows, the median time of:

- the predictor: labels and probabilities by two model calls (before) and by one (after, where
  the load-time check allows it), beside the model's own ``predict`` alone;
- the request checks: value by value (before) and a column at a time (after);
- the prediction log line: a dict per row for ``json.dumps`` (before) and the templated rows
  (after).

Both sides of each pair run in the same process, taking turns, so machine load widens both.
Numeric libraries get one thread, the server's default with one worker per CPU.
No servers, no Docker: the served figures against MLflow are ``bench/bench_serve.py``'s.

Run: python bench/bench_serve_paths.py [--repeat 31]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.timing import median_seconds
from cd4ml.serve.resources import limit_threads

# one numeric thread, as each worker of a server with one worker per CPU has by default
# (set before numpy loads; OMP_NUM_THREADS=N python bench/... measures N)
limit_threads(1)


def families() -> dict:
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_diabetes, load_wine, make_classification
    from sklearn.ensemble import (
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    out = {}
    X, y = load_wine(return_X_y=True, as_frame=True)
    out["RandomForest, wine"] = (RandomForestClassifier(100, random_state=0).fit(X, y), X, y,
                                 "classification")
    Xa, ya = make_classification(100_000, 30, n_informative=12, random_state=0)
    X = pd.DataFrame(Xa, columns=[f"f{i}" for i in range(30)])
    y = pd.Series(ya)
    out["HistGradientBoosting, 100k x 30"] = (
        HistGradientBoostingClassifier(random_state=0).fit(X, y), X, y, "classification")
    rng = np.random.default_rng(0)
    n = 3000
    X = pd.DataFrame({"island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
                      "sex": rng.choice(["male", "female"], n),
                      "bill_length": rng.normal(44, 5, n), "bill_depth": rng.normal(17, 2, n),
                      "flipper": rng.normal(200, 14, n), "mass": rng.normal(4200, 800, n)})
    score = X["bill_length"] / 5 - X["bill_depth"] / 2 + (X["island"] == "Dream") * 2
    y = pd.Series(np.select([score < -0.5, score < 1.0], ["Adelie", "Chinstrap"], "Gentoo"))
    pipe = Pipeline([("prep", ColumnTransformer([
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["island", "sex"]),
        ("num", StandardScaler(), ["bill_length", "bill_depth", "flipper", "mass"])])),
        ("lr", LogisticRegression(max_iter=1000))]).fit(X, y)
    out["Pipeline(OneHot, Scaler, LogReg), penguins-like"] = (pipe, X, y, "classification")
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    out["GradientBoostingRegressor, diabetes"] = (
        GradientBoostingRegressor(random_state=0).fit(X, y), X, y, "regression")
    return out


def median_ms(f, repeat: int) -> float:
    return median_seconds(f, repeat) * 1e3


def pair(before, after, repeat: int) -> tuple[float, float]:
    """Medians of two functions measured taking turns (so load hits both alike)."""
    a, b = [], []
    before()
    after()
    for _ in range(repeat):
        for f, out in ((before, a), (after, b)):
            t = time.perf_counter()
            f()
            out.append(time.perf_counter() - t)
    return statistics.median(a) * 1e3, statistics.median(b) * 1e3


def measure(name: str, model, X, y, task: str, n: int, repeat: int, slow_checks) -> str:
    """One line of the table: a family at one batch size."""
    from cd4ml.serve import schema
    from cd4ml.serve.predictor import Predictor
    from cd4ml.serve.predlog import records
    from cd4ml.stages.drift import feature_stats
    from cd4ml.stages.train import input_signature

    classes = sorted(y.unique().tolist()) if task == "classification" else None
    signature = input_signature(X, "target", classes)
    fields = schema.fields_of(signature)
    predictor = Predictor(model, fields, task, feature_stats(X, list(X.columns)))
    names = [f.name for f in fields]
    frame = X.iloc[:n]
    data = [[v.item() if hasattr(v, "item") else v for v in r]
            for r in frame[names].astype(object).itertuples(index=False, name=None)]
    body = json.dumps({"dataframe_split": {"columns": names, "data": data}}).encode()

    def parse():
        return schema.parse(schema.decode(body), fields).rows

    def checks(on: bool):
        slow_checks(on)
        try:
            return parse()
        finally:
            slow_checks(False)

    rows = parse()
    X_in = predictor.matrix(rows)
    single = predictor.single_call

    def two_calls():
        model.predict(X_in)
        if task == "classification":
            model.predict_proba(X_in)

    predict_only = median_ms(lambda: model.predict(X_in), repeat)
    if predictor.shortcut or not single:
        two, one = median_ms(two_calls, repeat), float("nan")
    else:
        two, one = pair(two_calls, lambda: predictor.predict(rows), repeat)
    before, after = pair(lambda: checks(True), lambda: checks(False), repeat)
    out = predictor.predict(rows)
    log_before, log_after = pair(
        lambda: json.dumps([dict(zip(names, r)) for r in rows], separators=(",", ":"),
                           default=str),
        lambda: records(names, rows), repeat)
    note = (" (forest shortcut)" if predictor.shortcut else
            "" if single or task != "classification" else " (two calls kept)")
    assert out.predictions == [v.item() if hasattr(v, "item") else v
                               for v in model.predict(X_in)]
    return (f"{name[:50]:50} {n:>5} | {predict_only:8.3f} {two:8.3f} {one:8.3f} | "
            f"{before:13.3f} {after:7.3f} | {log_before:10.3f} {log_after:7.3f}{note}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=31)
    args = p.parse_args()
    from cd4ml.serve import schema
    from cd4ml.serve.predictor import quiet_positional

    warnings.simplefilter("ignore")
    quiet_positional()
    fast_checks = (schema._as_given, schema._records_as_given, schema._split_as_given)

    def slow_checks(on: bool) -> None:
        if on:
            schema._as_given = lambda columns, fields: False
            schema._records_as_given = schema._split_as_given = lambda *a: None
        else:
            schema._as_given, schema._records_as_given, schema._split_as_given = fast_checks

    print(f"{'family':50} {'rows':>5} | {'predict':>8} {'2 calls':>8} {'1 call':>8} | "
          f"{'checks before':>13} {'after':>7} | {'log before':>10} {'after':>7}  (ms)")
    for name, (model, X, y, task) in families().items():
        for n in (1, 1000):
            print(measure(name, model, X, y, task, n, args.repeat, slow_checks), flush=True)


if __name__ == "__main__":
    main()
