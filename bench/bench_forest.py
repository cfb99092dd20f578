"""The random-forest shortcut against the compiled forest (issue 19: the shortcut stays only if it
still beats the compiled path), in one process, no server.

The wine RandomForest of pipelines/wine.yaml (100 trees, depth 8) and a bigger one (300 trees,
unbounded depth), each served by cd4ml's scikit-learn predictor (with its forest shortcut) and
by its ONNX predictor (the graph the build's compile stage makes, after the same parity check),
taking turns so that machine load widens both:

- one row: the predictor alone;
- 1,000 rows: the predictor alone;
- one request in process: ``App.predict`` on a one-row JSON body (parsing, checks, the model,
  the answer's JSON, the prediction log line queued), as the server's handler calls it.

Numeric libraries get one thread, the server's default with one worker per CPU.
Run: python bench/bench_forest.py [--repeat 201]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.timing import median_seconds
from cd4ml.serve.resources import limit_threads

limit_threads(1)


def predictors(model, X, y):
    from cd4ml.serve.compile import compile_model
    from cd4ml.serve.compiled import OnnxPredictor
    from cd4ml.serve.predictor import Predictor
    from cd4ml.serve.schema import fields_of
    from cd4ml.stages.drift import feature_stats
    from cd4ml.stages.train import input_signature

    signature = input_signature(X, "target", sorted(y.unique().tolist()))
    fields = fields_of(signature)
    stats = feature_stats(X, list(X.columns))
    sk = Predictor(model, fields, "classification", stats)
    assert sk.shortcut, "the forest shortcut did not pass its load-time check"
    compiled = compile_model(model, fields, "classification", stats,
                             X.head(60).values.tolist())
    assert compiled.passed, compiled.report["reason"]
    return signature, fields, sk, OnnxPredictor(compiled.graph, fields, compiled.report)


def request_fn(signature, fields, predictor, X, log_dir: Path):
    from cd4ml.artifacts import ArtifactMeta
    from cd4ml.serve.app import ENDPOINTS, App, Request
    from cd4ml.serve.metrics import Layout, Metrics
    from cd4ml.serve.predlog import PredictionLog

    meta = ArtifactMeta(pipeline="wine", task="classification", sha256="ab" * 32,
                        signature=signature, version=1)
    log = PredictionLog(str(log_dir / f"{predictor.runtime}.jsonl"),
                        {"pipeline": "wine", "model_version": 1})
    classes = [str(c) for c in signature["classes"]]
    app = App(meta, fields, log, Metrics(Layout(ENDPOINTS, classes)))
    app.predictor = predictor
    body = json.dumps({"instances": X.head(1).to_dict("records")}).encode()
    return (lambda: app.predict(Request("r", body, 0.0))), log


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=201)
    args = ap.parse_args()
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    warnings.simplefilter("ignore")
    X, y = load_wine(return_X_y=True, as_frame=True)
    y = y.rename("target")
    big = X.sample(1000, replace=True, random_state=0)
    rows1, rows1000 = X.head(1).values.tolist(), big.values.tolist()
    print(f"one numeric thread; medians of {args.repeat}; ms")
    print("| forest | measure | forest shortcut | ONNX Runtime | shortcut / ONNX |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name, params in (("wine RF(100, depth 8)", {"n_estimators": 100, "max_depth": 8}),
                             ("wine RF(300, unbounded)", {"n_estimators": 300})):
            model = RandomForestClassifier(random_state=42, **params).fit(X, y)
            signature, fields, sk, onnx = predictors(model, X, y)
            assert sk.predict(rows1000).predictions == onnx.predict(rows1000).predictions
            fns = {}
            logs = []
            for p in (sk, onnx):
                req, log = request_fn(signature, fields, p, X, Path(tmp))
                logs.append(log)
                fns[p.runtime] = {"one row": lambda p=p: p.predict(rows1),
                                  "1,000 rows": lambda p=p: p.predict(rows1000),
                                  "one-row request, in process": req}
            for measure in fns["sklearn"]:
                a = b = 0.0
                # taking turns, in rounds, so that a burst of load falls on both
                sa, sb = [], []
                for _ in range(5):
                    sa.append(median_seconds(fns["sklearn"][measure], max(3, args.repeat // 5)))
                    sb.append(median_seconds(fns["onnx"][measure], max(3, args.repeat // 5)))
                a, b = sorted(sa)[2] * 1e3, sorted(sb)[2] * 1e3
                print(f"| {name} | {measure} | {a:.3f} | {b:.3f} | {a / b:.1f}x |")
            for log in logs:
                log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
