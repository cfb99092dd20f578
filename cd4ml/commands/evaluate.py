"""``cd4ml evaluate``: score a model version and production on the held-out rows."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cd4ml.commands.common import add_json, add_pipeline, add_store, load_pipeline, open_store
from cd4ml.errors import SpecError, StoreError


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_pipeline(p)
    add_store(p)
    add_json(p)
    p.add_argument("--model", metavar="VERSION",
                   help="model version to score (default: the pipeline's latest)")


def model_version(text: str, pipeline: str) -> int:
    """``3`` or ``<pipeline>:3``."""
    head, _, tail = text.rpartition(":")
    if not tail.isdigit():
        raise SpecError(f"--model {text!r}: expected a version number, e.g. 3 or {pipeline}:3")
    if head and head != pipeline:
        raise SpecError(f"--model {text!r} is of pipeline {head!r}, but the spec is {pipeline!r}; "
                        "choose the spec with --pipeline")
    return int(tail)


def run(args: argparse.Namespace) -> int:
    from cd4ml.console import Progress, print_json, to_jsonable
    from cd4ml.evaluate import evaluate
    from cd4ml.events import listening

    spec = load_pipeline(args)
    with open_store(args) as store, listening(Progress(sys.stderr)):
        if args.model:
            model = store.model(spec.name, model_version(args.model, spec.name))
        else:
            model = store.latest_model(spec.name)
            if model is None:
                raise StoreError(f"pipeline {spec.name!r} has no model version yet; run "
                                 "'cd4ml train' first")
        result = evaluate(spec, store, model, model.run_id)
    if args.json:
        print_json({"run_id": model.run_id, **to_jsonable(result)})
    else:
        print(render(result, spec.name))
    return 0


def render(result: Any, pipeline: str) -> str:
    """Overall metrics with production beside them, then every slice, then the confusion matrix."""
    from cd4ml.console import table

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
