"""The machine-readable shape of everything the read side shows: ``cd4ml runs|models|show|
lineage|compare --json`` print these, and the web view's JSON API (``cd4ml ui``) serves the very
same objects, so the terminal, scripts and the browser never disagree.

Every function takes the store (or a result of ``cd4ml.reporting.lineage``) and returns plain
JSON-able dicts and lists; nothing here prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cd4ml.reporting.console import to_jsonable

if TYPE_CHECKING:  # the store (SQLAlchemy) is not imported for 'cd4ml --help'
    from cd4ml.store import GateDecision, ModelSummary, Run, Store


def _time(stamp: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


def seconds_between(start: str | None, end: str | None) -> float | None:
    a, b = _time(start), _time(end)
    return (b - a).total_seconds() if a and b else None


def gate_json(gate: GateDecision | None) -> dict | None:
    return None if gate is None else {**to_jsonable(gate), "blessed": gate.blessed}


def deployed_now(store: Store, pipeline: str | None = None) -> dict[int, list[str]]:
    """model version id -> the environments it serves in now."""
    where: dict[int, list[str]] = {}
    for d in store.current_deployments(pipeline):
        where.setdefault(d.model_version_id, []).append(d.environment)
    return where


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunRow:
    """One line of the runs table: the run, the model its results stand on (a cached run's is
    the source run's), and its overall candidate metrics (last logged step)."""

    run: Run
    model: ModelSummary | None
    metrics: dict[str, float | None]

    def json(self) -> dict:
        r = self.run
        # field by field: only parameters and tags can hold what JSON cannot (NaN)
        plain = dict(vars(r))
        plain["params"], plain["tags"] = to_jsonable(r.params), to_jsonable(r.tags)
        return {**plain, "model_version": self.model.version if self.model else None,
                "blessed": self.model.blessed if self.model else None,
                "duration_seconds": seconds_between(r.started_at, r.ended_at),
                "metrics": {k: _finite(v) for k, v in self.metrics.items()}}


def run_rows(store: Store, pipeline: str | None = None, limit: int | None = None) -> list[RunRow]:
    """The newest runs (all when ``limit`` is None) with their models and metrics, in three
    queries however many runs there are."""
    return rows_for(store, store.runs(pipeline, limit=limit if limit is not None else 2**62),
                    every=limit is None and pipeline is None)  # every run: no ids to send


def rows_for(store: Store, runs: list[Run], every: bool = False) -> list[RunRow]:
    """The runs table's lines of ``runs`` (``every``: they are all the store's runs)."""
    from cd4ml.states import RunStatus
    from cd4ml.store.liveness import shown_status

    # a run whose process was killed shows as abandoned before the next run marks it so
    runs = [r if r.status != RunStatus.RUNNING else replace(r, status=shown_status(r))
            for r in runs]
    sources = [r.reused_from or r.id for r in runs]
    models = {m.run_id: m for m in store.model_summaries(None if every else sources)}
    overall: dict[str, dict[str, float | None]] = {}
    for m in store.overall_metrics(None if every else sources):
        overall.setdefault(m.run_id, {})[m.name] = m.value
    return [RunRow(r, models.get(s), overall.get(s, {})) for r, s in zip(runs, sources)]


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def models_json(store: Store, pipeline: str | None = None, limit: int = 50) -> list[dict]:
    models = store.models(pipeline, limit=limit)
    deployed = deployed_now(store, pipeline)
    return [{**to_jsonable(m), "ref": m.ref, "deployed": deployed.get(m.id, []),
             "gate": gate_json(store.gate(m.run_id))} for m in models]


# ----------------------------------------------------------------------------- one run / version


def show_json(store: Store, ref: str, pipeline: str | None = None) -> dict:
    """Everything recorded about a run id or a model version (a bare one of ``pipeline``)."""
    from cd4ml.reporting.lineage import resolve
    from cd4ml.reporting.summary import summarize

    target = resolve(store, ref, pipeline)
    summary = summarize(store, target.run.id)
    model = target.model or summary.model
    source = summary.source
    dataset = store.dataset(source.data_hash) if source.data_hash else None
    return {
        "run": to_jsonable(summary.run), "source_run": to_jsonable(source),
        "cached": summary.cached, "model": to_jsonable(model) if model else None,
        "dataset": to_jsonable(dataset) if dataset else None,
        "validation": to_jsonable(summary.validation) if summary.validation else None,
        "metrics": [{**to_jsonable(m), "delta": m.delta} for m in summary.metrics],
        "gate": gate_json(summary.gate),
        "deployed": deployed_now(store).get(model.id, []) if model else [],
        "images": to_jsonable(store.images_for(model.id)) if model else [],
        "approvals": to_jsonable(store.approvals(model.id)) if model else [],
        # what cd4ml monitor found for this version, oldest first (findings: see cd4ml.watch)
        "monitorings": to_jsonable(list(reversed(store.monitorings(model_version_id=model.id,
                                                                   limit=20)))) if model else [],
    }


# ----------------------------------------------------------------------------- lineage


def lineage_json(result: Any) -> dict:
    """A ``Lineage``: data set, run, model, gate, images, deployments and monitoring results."""
    return {**to_jsonable(result), "ref": result.model.ref, "gate": gate_json(result.gate),
            "environments": list(result.environments)}


def prediction_json(found: Any) -> dict:
    """A ``PredictionLineage``: the logged prediction and its model's lineage."""
    return {"prediction": found.prediction, "sha256_matches": found.sha256_matches,
            "lineage": lineage_json(found.lineage)}


# ----------------------------------------------------------------------------- compare


def label(resolved: Any) -> str:
    return resolved.model.ref if resolved.model else resolved.source.id


def compare_json(c: Any) -> dict:
    """A ``Comparison`` of two references; every delta is B minus A."""
    la, lb = label(c.a), label(c.b)
    return {"a": {"ref": la, **to_jsonable(c.a)}, "b": {"ref": lb, **to_jsonable(c.b)},
            "metrics": [{**to_jsonable(m), "delta": m.delta} for m in c.metrics],
            "params": to_jsonable(c.params),
            "changed_params": [p.name for p in c.changed_params],
            "differences": [{"what": w, "a": a, "b": b} for w, a, b in c.facts]}


def metric_history(store: Store, pipeline: str, limit: int = 50) -> list[dict]:
    """The pipeline's model versions, oldest first, with their overall candidate metrics and
    their gate's rules: what a chart of metrics across versions with the gate lines needs."""
    models = sorted(store.models(pipeline, limit=limit), key=lambda m: m.version)
    values: dict[str, dict[str, float | None]] = {}
    for v in store.overall_metrics([m.run_id for m in models]):
        values.setdefault(v.run_id, {})[v.name] = _finite(v.value)
    out = []
    for m in models:
        gate = store.gate(m.run_id)
        out.append({"ref": m.ref, "version": m.version, "run_id": m.run_id, "blessed": m.blessed,
                    "metrics": values.get(m.run_id, {}),
                    "gate_rules": to_jsonable(gate.rules) if gate else []})
    return out

