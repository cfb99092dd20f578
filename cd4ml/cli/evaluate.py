"""``cd4ml evaluate``: score a model version and production on the held-out rows."""

from __future__ import annotations

import argparse
from typing import Any

from cd4ml.cli.common import add_common, model_in_store


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--model", metavar="MODEL_VERSION",
                   help="the version to score, e.g. 3 or wine:3 (default: the pipeline's newest)")


def run(args: argparse.Namespace) -> int:
    from cd4ml.reporting.console import print_json, to_jsonable
    from cd4ml.stages.evaluate import evaluate

    with model_in_store(args, args.model, missing="run 'cd4ml train' first") as (spec, store, model):
        result = evaluate(spec, store, model, model.run_id)
    if args.json:
        print_json({"run_id": model.run_id, **to_jsonable(result)})
    else:
        print(render(result, spec.name))
    return 0


def render(result: Any, pipeline: str) -> str:
    """Overall metrics with production beside them, then every slice, then the confusion matrix."""
    from cd4ml.reporting.console import table

    prod = result.production_metrics
    head = f"production ({pipeline}:{result.production_version})" if prod is not None else "production"
    rows: list[Any] = [(name, value, None if prod is None else prod.get(name),
             _delta(value, None if prod is None else prod.get(name)))
            for name, value in result.metrics.items()]
    out = [f"{pipeline}:{result.model_version} on {result.test_rows} held-out rows",
           table(["metric", "candidate", head, "delta"], rows)]
    if prod is None:
        out.append("(no production model to compare with)")
    for col, values in result.slices.items():
        prod_values = (result.production_slices or {}).get(col, {})
        rows = [(f"{col}={value}", name, v, prod_values.get(value, {}).get(name),
                 _delta(v, prod_values.get(value, {}).get(name)))
                for value, metrics in values.items() for name, v in metrics.items()]
        out += ["", table(["slice", "metric", "candidate", head, "delta"], rows)]
    if result.confusion_matrix:
        labels = [str(x) for x in result.labels]
        rows = [(f"true {label}", *row) for label, row in zip(labels, result.confusion_matrix)]
        out += ["", "confusion matrix (rows: true class, columns: predicted)",
                table(["", *labels], rows)]
    return "\n".join(out)


def _delta(a: float | None, b: float | None) -> str:
    import math

    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a - b:+.4g}"
