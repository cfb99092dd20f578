"""A run's results gathered from the store, for every view of them: the console summary,
``cd4ml show``, the PR comment, the check run and the step summary all read this one shape,
so they never disagree."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cd4ml.states import DeploymentStatus, MetricScope
from cd4ml.store import GateDecision, Metric, ModelVersion, Run, Store, Validation


@dataclass(frozen=True)
class MetricKey:
    """Which value of a metric: its name, on the whole held-out set or on one slice of it."""

    name: str
    slice: str  # "" for the whole held-out set
    slice_value: str


@dataclass(frozen=True)
class MetricRow(MetricKey):
    """One metric, candidate next to production on the same held-out rows."""

    candidate: float | None
    production: float | None
    production_version: int | None
    step: int | None = None

    @property
    def delta(self) -> float | None:
        if self.candidate is None or self.production is None:
            return None
        return self.candidate - self.production


@dataclass(frozen=True)
class RunSummary:
    run: Run  # the run asked about
    source: Run  # the run whose results stand (differs when the first was served from cache)
    model: ModelVersion | None
    validation: Validation | None
    metrics: tuple[MetricRow, ...]
    gate: GateDecision | None
    state: str = ""  # the model version's state now: deployed where, rolled back, bad

    @property
    def cached(self) -> bool:
        return self.source.id != self.run.id

    @property
    def baseline(self) -> str:
        """The baseline the candidate was judged against, named (every output says it)."""
        version = self.gate.baseline_version if self.gate else None
        version = version or next((m.production_version for m in self.metrics
                                   if m.production_version), None)
        if version is None:
            return ("baseline: none - nothing serves in the last environment yet, so relative "
                    "rules (max_drop) pass and drift is not checked")
        return f"baseline: {self.run.pipeline}:{version}, the version serving in production then"


def metric_rows(metrics: list[Metric]) -> tuple[MetricRow, ...]:
    """Pair candidate and production values by (name, slice, value); last logged step wins."""
    cand: dict[tuple[str, str, str], Metric] = {}
    prod: dict[tuple[str, str, str], Metric] = {}
    for m in metrics:
        key = (m.name, m.slice, m.slice_value)
        (prod if m.scope is MetricScope.PRODUCTION else cand)[key] = m
    rows = []
    for key in list(dict.fromkeys([*cand, *prod])):
        c, p = cand.get(key), prod.get(key)
        rows.append(MetricRow(
            name=key[0], slice=key[1], slice_value=key[2],
            candidate=_finite(c.value) if c else None,
            production=_finite(p.value) if p else None,
            production_version=p.model_version if p else None,
            step=c.step if c else None,
        ))
    return tuple(rows)


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def summarize(store: Store, run_id: str) -> RunSummary:
    """Everything recorded for ``run_id``; a cached run shows the results it reused."""
    run = store.run(run_id)
    source = store.run(run.reused_from) if run.reused_from else run
    return RunSummary(
        run=run,
        source=source,
        model=store.model_for_run(source.id),
        validation=store.validation(source.id),
        metrics=metric_rows(store.metrics(source.id)),
        gate=store.gate(source.id),
        state=version_state(store, store.model_for_run(source.id)),
    )


def version_state(store: Store, model: ModelVersion | None) -> str:
    """A model version's state now, as the store records it: where it serves, whether it was
    rolled back and is marked bad (a report of an old run must not still say only blessed)."""
    if model is None:
        return ""
    deps = store.deployments(model.pipeline, model_version_id=model.id, limit=1000)
    serving = sorted({d.environment for d in deps if d.current})
    parts = []
    if model.bad:
        rolled = sorted({d.environment for d in deps if d.status in (DeploymentStatus.ROLLED_BACK, DeploymentStatus.REPLACED)})
        parts.append("rolled back and marked bad" if rolled else "marked bad")
    parts.append(f"deployed in {', '.join(serving)}" if serving else "not deployed")
    return "; ".join(parts)
