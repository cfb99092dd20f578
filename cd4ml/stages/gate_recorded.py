"""``cd4ml gate`` as a library call: decide on a run recorded earlier (by ``cd4ml train`` and
``evaluate``, or by the tracking API) and record the verdict on the run.

A pipeline run's model is gated on its held-out evaluation; a tracked run without one on the
metrics it logged (:func:`cd4ml.stages.tracking.gate_run`). A run served from the cache stands
on the results of the run it reused, so that one is gated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cd4ml.errors import StoreError
from cd4ml.states import RunKind, RunStatus

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.stages.gate import GateResult
    from cd4ml.store import ModelVersion, Run, Store


@dataclass(frozen=True)
class RecordedGate:
    """The run that was gated (the source of a cached one), its model and the decision."""

    run: Run
    model: ModelVersion
    result: GateResult


def gate_recorded(spec: Spec, store: Store, run_id: str | None = None, *,
                  override_by: str | None = None, reason: str | None = None) -> RecordedGate:
    """Gate run ``run_id`` (default: the pipeline's newest run with a model) of ``spec``."""
    from cd4ml.stages.evaluate import evaluation_from_store
    from cd4ml.stages.gate import gate

    run, model = _run_and_model(store, spec.name, run_id)
    evaluation = evaluation_from_store(store, run.id, spec, model)
    if evaluation is None and run.kind is RunKind.TRACKED:
        from cd4ml.stages.tracking import gate_run

        result = gate_run(spec, run.id, store, override_by=override_by, reason=reason)
    elif evaluation is None:
        raise StoreError(f"run {run.id} has no evaluation of {model.ref}; run "
                         f"'cd4ml evaluate --model {model.version}' first")
    else:
        result = gate(spec, store, evaluation, run.id, model, override_by=override_by,
                      reason=reason)
    if run.status in (RunStatus.SUCCEEDED, RunStatus.GATE_FAILED):
        run = store.update_run(run.id, status=RunStatus.SUCCEEDED if result.blessed
                               else RunStatus.GATE_FAILED)
    return RecordedGate(run, model, result)


def _run_and_model(store: Store, pipeline: str, run_id: str | None) -> tuple[Run, ModelVersion]:
    if run_id:
        found = store.run(run_id)
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
