"""Gating a tracked run on the metrics it logged, with its spec's rules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cd4ml.errors import TrackedRunError
from cd4ml.stages.tracking.handle import open_store
from cd4ml.states import MetricScope, RunStatus

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.stages.gate import GateResult
    from cd4ml.store import Store


def logged_metrics(store: Store, run_id: str, scope: MetricScope = MetricScope.CANDIDATE) -> tuple[
        dict[str, float], dict[str, dict[str, dict[str, float]]]]:
    """A run's logged metrics as an evaluation reads them: overall ``{metric: value}`` and
    ``{slice: {value: {metric: value}}}``; of a metric logged several times the last one counts."""
    overall: dict[str, float] = {}
    slices: dict[str, dict[str, dict[str, float]]] = {}
    for m in store.metrics(run_id):  # in logging order, so a later value replaces an earlier one
        if m.scope != scope:
            continue
        value = float("nan") if m.value is None else float(m.value)
        if m.slice:
            slices.setdefault(m.slice, {}).setdefault(m.slice_value, {})[m.name] = value
        else:
            overall[m.name] = value
    return overall, slices


def gate_run(spec: Spec | str | Path, run_id: str, store: Store | str | None = None, *,
             override_by: str | None = None, reason: str | None = None) -> GateResult:
    """Gate a tracked run's model on the metrics the run logged, with ``spec``'s rules.

    The rules are :func:`cd4ml.stages.gate.gate`'s, failing closed the same way: a metric a rule reads
    that the run did not log fails that rule, naming it. ``max_drop`` rules compare with the
    metrics the production version's own run recorded (there are no shared held-out rows here).
    The decision is recorded, blesses the model when it passes, and a failed gate marks the run
    ``gate_failed``. Runs of ``cd4ml run`` are gated by the pipeline on held-out rows instead.
    """
    from cd4ml.events import StageWarning, emit
    from cd4ml.refs import load_pipeline
    from cd4ml.stages.evaluate import EvaluationResult
    from cd4ml.stages.gate import gate

    spec = load_pipeline(spec)
    opened, owns = open_store(store)
    try:
        run = opened.run(run_id)
        if run.pipeline != spec.name:
            raise TrackedRunError(f"run {run.id} is of pipeline {run.pipeline!r}, not {spec.name!r} "
                                f"({spec.path}); gate it with its own spec")
        if run.status is RunStatus.RUNNING:
            raise TrackedRunError(f"run {run.id} is still running; gate it once it has ended")
        if run.status is RunStatus.FAILED:
            raise TrackedRunError(f"run {run.id} failed ({run.error}); there is nothing to gate")
        model = opened.model_for_run(run.id)
        if model is None:
            raise TrackedRunError(f"run {run.id} logged no model, so there is nothing to bless; "
                                "call run.log_model(estimator, signature_from=X) in the run")
        metrics, slices = logged_metrics(opened, run.id)
        needed = sorted({r.metric for r in spec.gates if r.slice is None} - set(metrics))
        needed += sorted({f"{r.metric} per {r.slice}" for r in spec.gates
                          if r.slice is not None and not any(r.metric in v for v in slices.get(r.slice, {}).values())})
        if needed:
            emit(StageWarning("gate", f"run {run.id} logged no {', '.join(needed)}; the gate "
                              "fails closed on it: log it with run.log_metric(name, value)"))

        production = opened.production_model(spec.name, spec.production.name if spec.production else None)
        prod_metrics = prod_slices = None
        if production is not None and production.id != model.id:
            prod_metrics, prod_slices = logged_metrics(opened, production.run_id)
            rows = [{"name": k, "value": v, "scope": MetricScope.PRODUCTION,
                     "model_version": production.version}
                    for k, v in prod_metrics.items() if k in spec.metrics]
            rows += [{"name": k, "value": v, "scope": MetricScope.PRODUCTION, "slice": col, "slice_value": val,
                      "model_version": production.version}
                     for col, values in prod_slices.items() for val, ms in values.items()
                     for k, v in ms.items() if k in spec.metrics]
            opened.record_metrics(run.id, rows)
        else:
            production = None
        evaluation = EvaluationResult(
            model_version=model.version, metrics=metrics, slices=slices,
            production_version=production.version if production else None,
            production_metrics=prod_metrics, production_slices=prod_slices,
            confusion_matrix=None, labels=None, test_rows=0)
        result = gate(spec, opened, evaluation, run.id, model, override_by=override_by, reason=reason)
        status = RunStatus.SUCCEEDED if result.blessed else RunStatus.GATE_FAILED
        if run.status != status:
            opened.update_run(run.id, status=status)
        return result
    finally:
        if owns:
            opened.close()
