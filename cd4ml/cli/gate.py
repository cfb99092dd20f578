"""``cd4ml gate``: decide whether a run's model may be promoted; exit 1 if it may not."""

from __future__ import annotations

import argparse
import os
from typing import Any

from cd4ml.cli.common import (
    add_common,
    add_override,
    load_pipeline,
    overrider,
    store_with_progress,
)
from cd4ml.errors import StoreError
from cd4ml.states import RuleKind, RunKind, RunStatus


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--run", metavar="RUN_ID",
                   help="the run to gate (default: the pipeline's latest run with a model)")
    add_override(p)


def run(args: argparse.Namespace) -> int:
    from cd4ml.reporting.console import print_json, to_jsonable
    from cd4ml.stages.evaluate import evaluation_from_store
    from cd4ml.stages.gate import gate

    by, reason = overrider(args)
    spec = load_pipeline(args)
    with store_with_progress(args) as store:
        run_record, model = _run_and_model(store, spec.name, args.run)
        evaluation = evaluation_from_store(store, run_record.id, spec, model)
        if evaluation is None and run_record.kind is RunKind.TRACKED:
            # a run from the tracking API is gated on the metrics it logged
            from cd4ml.stages.tracking import gate_run

            result = gate_run(spec, run_record.id, store, override_by=by, reason=reason)
        elif evaluation is None:
            raise StoreError(f"run {run_record.id} has no evaluation of {model.ref}; run "
                             f"'cd4ml evaluate --model {model.version}' first")
        else:
            result = gate(spec, store, evaluation, run_record.id, model, override_by=by, reason=reason)
        if run_record.status in (RunStatus.SUCCEEDED, RunStatus.GATE_FAILED):
            store.update_run(run_record.id, status=RunStatus.SUCCEEDED if result.blessed
                             else RunStatus.GATE_FAILED)
    if args.json:
        print_json({"run_id": run_record.id, "model_version": model.version,
                    **to_jsonable(result)})
    else:
        print(render(result, model.ref, spec.path))
    return 0 if result.blessed else 1


def _run_and_model(store: Any, pipeline: str, run_id: str | None) -> tuple[Any, Any]:
    if run_id:
        found = store.run(run_id)
        # a run served from the cache stands on the results of the run it reused
        source = store.run(found.reused_from) if found.reused_from else found
        model = store.model_for_run(source.id)
        if model is None:
            raise StoreError(f"run {found.id} produced no model; gate a run that trained one")
        return source, model
    for candidate in store.runs(pipeline, limit=200):
        model = store.model_for_run(candidate.id)
        if model is not None:
            return candidate, model
    raise StoreError(f"pipeline {pipeline!r} has no run with a model; run 'cd4ml train' and "
                     "'cd4ml evaluate' first")


def render(result: Any, ref: str, spec_path: Any) -> str:
    """The rules as a table, why each failing one failed (with its spec line), the verdict."""
    from cd4ml.reporting.console import paint, table

    rows = [(o.rule, o.observed, None if o.kind is RuleKind.NO_GATES else o.threshold, o.baseline,
             "pass" if o.passed else "FAIL") for o in result.outcomes]
    out = [table(["rule", "observed", "threshold", "baseline", "result"], rows)]
    baseline = (f"baseline: production {ref.split(':')[0]}:{result.baseline_version}"
                if result.baseline_version is not None else "baseline: no production model")
    out.append(baseline)
    notes = [o for o in result.outcomes if not o.passed]
    if notes:
        out.append("")
        out += [f"  {_where(spec_path, o.line)}{o.rule}: {o.reason}" for o in notes]
    out.append("")
    if result.overridden:
        out.append(paint(f"OVERRIDDEN by {result.override_by}: {result.override_reason}", "yellow"))
        out.append(f"gate failed, overridden: {ref} blessed")
    elif result.passed:
        out.append(paint(f"gate passed: {ref} blessed", "green"))
    else:
        out.append(paint(f"gate FAILED: {len(notes)} of {len(result.outcomes)} rule checks "
                         f"failed; {ref} not blessed", "red"))
    return "\n".join(out)


def _where(spec_path: Any, line: int) -> str:
    if not line:
        return ""
    try:
        shown = os.path.relpath(spec_path)
    except ValueError:
        shown = str(spec_path)
    return f"{shown}:{line}: "
