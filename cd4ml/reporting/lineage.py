"""Walking the store backwards and sideways: where a model version came from and where it went
(data set -> run -> model -> images -> deployments), which model answered a logged prediction,
and how two runs or model versions differ.

A reference is a run id (or a unique prefix of one) or a model version in the grammar of
:mod:`cd4ml.refs`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cd4ml.errors import DataError, StoreError, UsageError
from cd4ml.refs import ModelRef, find_model, parse_model_ref, parse_run_or_model
from cd4ml.states import MetricScope
from cd4ml.store import (
    Dataset,
    Deployment,
    DeploymentStep,
    GateDecision,
    Image,
    ModelVersion,
    Monitoring,
    Run,
    Store,
)


@dataclass(frozen=True)
class Lineage:
    """One model version and everything recorded up- and downstream of it, oldest first."""

    model: ModelVersion
    run: Run  # the run that trained it
    dataset: Dataset | None  # the data it was trained on, if the run recorded it
    gate: GateDecision | None
    images: tuple[Image, ...]
    deployments: tuple[Deployment, ...]
    monitorings: tuple[Monitoring, ...] = ()  # what ``cd4ml monitor`` found, oldest first
    # the steps of its canary and shadow releases (with their analyses), by deployment id
    steps: dict[int, tuple[DeploymentStep, ...]] = field(default_factory=dict)

    @property
    def environments(self) -> tuple[str, ...]:
        """Where this version serves now."""
        return tuple(d.environment for d in self.deployments if d.current)


@dataclass(frozen=True)
class Resolved:
    """What a reference names: the run asked about, the run whose results stand (they differ
    when the first was served from the cache), and its model version if it has one."""

    run: Run
    source: Run
    model: ModelVersion | None

    @property
    def label(self) -> str:
        return self.model.ref if self.model else f"run {self.run.id}"


def resolve(store: Store, ref: str, pipeline: str | None = None) -> Resolved:
    """A run id (or unique prefix) or a model version (a bare one of ``pipeline``); unknown
    ones raise StoreError. A number that is no recorded version is tried as a run id prefix,
    since a prefix of a hexadecimal run id may be all digits."""
    parsed = parse_run_or_model(ref)
    if isinstance(parsed, ModelRef):
        try:
            model = find_model(store, parsed, pipeline)
        except (StoreError, UsageError):
            if not ref.strip().isdigit() or not _is_run(store, ref.strip()):
                raise
        else:
            run = store.run(model.run_id)
            return Resolved(run=run, source=run, model=model)
    run = store.run(ref.strip())
    source = store.run(run.reused_from) if run.reused_from else run
    return Resolved(run=run, source=source, model=store.model_for_run(source.id))


def _is_run(store: Store, prefix: str) -> bool:
    try:
        store.run(prefix)
    except StoreError:
        return False
    return True


def lineage(store: Store, ref: ModelRef | str | int, pipeline: str | None = None) -> Lineage:
    """Data set -> run -> model -> images -> deployments of the model version ``ref`` names
    (a bare one of ``pipeline``)."""
    model = find_model(store, ref, pipeline)
    run = store.run(model.run_id)
    deps = tuple(sorted(store.deployments(model_version_id=model.id, limit=10_000),
                        key=lambda d: d.id))
    return Lineage(
        model=model,
        run=run,
        dataset=store.dataset(run.data_hash) if run.data_hash else None,
        gate=store.gate(run.id),
        images=tuple(sorted(store.images_for(model.id), key=lambda i: i.id)),
        deployments=deps,
        monitorings=tuple(reversed(store.monitorings(model_version_id=model.id, limit=20))),
        steps={i: tuple(s) for i, s in store.steps_of(
            [d.id for d in deps if (d.details or {}).get("strategy")]).items()},
    )


# ----------------------------------------------------------------------------- predictions


def default_log_paths() -> list[Path]:
    """``$CD4ML_PREDICTION_LOG``, and the prediction logs the local and Swarm environments
    deployed from here keep under ``logs_root()`` (``<project>/<pipeline>/<environment>/*.jsonl``)."""
    from cd4ml.paths import logs_root

    paths = [Path(os.environ["CD4ML_PREDICTION_LOG"])] if os.environ.get("CD4ML_PREDICTION_LOG") else []
    root = logs_root()
    if root.is_dir():
        paths += sorted(root.glob("*/*/*/*.jsonl"))
    return paths


def find_prediction(request_id: str, log_paths: Iterable[str | Path]) -> dict:
    """The prediction-log line (JSON) with this request id, from the newest occurrence across
    ``log_paths`` (``-`` reads standard input). Lines that are not JSON (a container's other
    output) are skipped. The record gains ``log_location``: ``file:line``."""
    paths = [str(p) for p in log_paths]
    if not paths:
        raise DataError("no prediction log to search: pass --log FILE (the server's "
                        "CD4ML_PREDICTION_LOG, or '-' with 'docker logs'/'kubectl logs' output "
                        "piped in)")
    found: dict | None = None
    for path in paths:
        for number, line in _lines(path):
            # cheap test first: logs are long and almost every line is someone else's request
            if request_id not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and str(record.get("request_id")) == request_id:
                found = {**record, "log_location": f"{path}:{number}"}
    if found is None:
        raise StoreError(f"no prediction with request id {request_id!r} in {', '.join(paths)}; "
                         "check the id (the X-Request-ID response header) and the log file")
    return found


def _lines(path: str) -> Iterable[tuple[int, str]]:
    if path == "-":
        yield from enumerate(sys.stdin, start=1)
        return
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from enumerate(f, start=1)
    except OSError as e:
        raise DataError(f"cannot read prediction log {path}: {e.strerror}; pass an existing "
                        "file with --log") from None


def prediction_model(record: dict, pipeline: str | None = None) -> tuple[str | None, int]:
    """The (pipeline, version) that answered a logged prediction. The server writes
    ``pipeline`` and an integer ``model_version``; ``model`` (``3`` or ``"wine:3"``) is read too."""
    raw = record.get("model_version", record.get("model"))
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    try:
        ref = parse_model_ref(raw) if isinstance(raw, (int, str)) else None
    except UsageError:
        ref = None
    if ref is None or ref.version is None:
        raise StoreError(f"prediction {record.get('request_id')!r} names no model version "
                         f"(model_version={raw!r}); is this a cd4ml prediction log?")
    return ref.pipeline or record.get("pipeline") or pipeline, ref.version


@dataclass(frozen=True)
class PredictionLineage:
    prediction: dict
    lineage: Lineage
    # the log line's names when they point at another version than its sha256 does
    named: str | None = None

    @property
    def sha256_matches(self) -> bool | None:
        """Whether the serving artifact is the recorded one (None: the log does not say)."""
        logged = self.prediction.get("model_sha256")
        return None if not logged else logged == self.lineage.model.sha256


def prediction_lineage(store: Store, request_id: str, log_paths: Iterable[str | Path],
                       pipeline: str | None = None) -> PredictionLineage:
    """Find a prediction by request id and walk the lineage of the model that made it. The
    artifact's sha256 in the log line identifies the model; the pipeline name and version
    beside it are names, which another project's server can share."""
    record = find_prediction(request_id, log_paths)
    name, version = prediction_model(record, pipeline)
    logged = record.get("model_sha256")
    if logged:
        same = [m for m in store.models(limit=1_000_000) if m.sha256 == logged]
        if not same:
            raise StoreError(f"prediction {request_id!r} was answered by a model with sha256 "
                             f"{str(logged)[:12]} that this store does not record (the log names "
                             f"{name or '?'}:{version}): another project's server answered it; "
                             "look it up in that project's store")
        found = next((m for m in same if m.pipeline == name and m.version == version), same[0])
        named = None if (found.pipeline, found.version) == (name, version) else f"{name}:{version}"
        return PredictionLineage(prediction=record, named=named,
                                 lineage=lineage(store, ModelRef(found.pipeline, found.version)))
    if name is None:
        owners = sorted({m.pipeline for m in store.models(limit=100_000) if m.version == version})
        if len(owners) != 1:
            raise StoreError(f"prediction {request_id!r} names version {version} but no pipeline"
                             f"{' and several have it: ' + ', '.join(owners) if owners else ''}; "
                             "pass --pipeline NAME")
        name = owners[0]
    return PredictionLineage(prediction=record, lineage=lineage(store, ModelRef(name, version)))


# ----------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class MetricDiff:
    name: str
    slice: str  # "" for the whole held-out set
    slice_value: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass(frozen=True)
class ParamDiff:
    name: str
    a: Any
    b: Any
    same: bool


@dataclass(frozen=True)
class Comparison:
    """Two runs or model versions side by side; every delta is B minus A."""

    a: Resolved
    b: Resolved
    metrics: tuple[MetricDiff, ...]
    params: tuple[ParamDiff, ...]  # every parameter of either, ``same`` telling which differ
    facts: tuple[tuple[str, Any, Any], ...]  # commit, data, spec... where they differ

    @property
    def changed_params(self) -> tuple[ParamDiff, ...]:
        return tuple(p for p in self.params if not p.same)


_MISSING = object()


def compare(store: Store, a: str, b: str, pipeline: str | None = None) -> Comparison:
    """Candidate metrics (overall and per slice) and parameters of two references (a bare
    model version is of ``pipeline``)."""
    ra, rb = resolve(store, a, pipeline), resolve(store, b, pipeline)
    ma, mb = _candidate(store, ra.source), _candidate(store, rb.source)
    keys = list(dict.fromkeys([*ma, *mb]))
    metrics = tuple(MetricDiff(name=k[0], slice=k[1], slice_value=k[2],
                               a=ma.get(k), b=mb.get(k)) for k in keys)
    pa, pb = ra.source.params or {}, rb.source.params or {}
    params = []
    for name in sorted(set(pa) | set(pb)):
        va, vb = pa.get(name, _MISSING), pb.get(name, _MISSING)
        params.append(ParamDiff(name=name, a=None if va is _MISSING else va,
                                b=None if vb is _MISSING else vb, same=_same(va, vb)))
    facts = []
    for label, get in (("commit", lambda r: r.source.git_commit), ("branch", lambda r: r.source.branch),
                       ("data", lambda r: r.source.data_hash), ("spec", lambda r: r.source.spec_hash),
                       ("code", lambda r: r.source.code_hash),
                       ("artifact sha256", lambda r: r.model.sha256 if r.model else None)):
        va, vb = get(ra), get(rb)
        if va != vb:
            facts.append((label, va, vb))
    return Comparison(a=ra, b=rb, metrics=metrics, params=tuple(params), facts=tuple(facts))


def _candidate(store: Store, run: Run) -> dict[tuple[str, str, str], float | None]:
    # the candidate's own values; the last logged step of a metric wins
    return {(m.name, m.slice, m.slice_value): m.value for m in store.metrics(run.id)
            if m.scope is MetricScope.CANDIDATE}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
