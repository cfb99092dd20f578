"""The store's records: one frozen dataclass per table, as every query returns its rows, and
the outcome of one gate rule as a gate decision holds them. States come back as the enums of
:mod:`cd4ml.states` (equal to the text the database holds)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

from cd4ml.states import (
    ApprovalSource,
    DeployAction,
    DeploymentStatus,
    InfraStatus,
    MetricScope,
    RuleKind,
    RunKind,
    RunStatus,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")
Decoders = dict[str, Callable[[Any], Any]]


@dataclass(frozen=True)
class Run:
    id: str
    pipeline: str
    kind: RunKind
    status: RunStatus
    git_commit: str | None
    branch: str | None
    actor: str | None
    spec_hash: str | None
    code_hash: str | None
    data_hash: str | None
    cache_key: str | None
    params: dict
    tags: dict
    started_at: str
    ended_at: str | None
    error: str | None
    reused_from: str | None
    holder: str | None = None
    heartbeat_at: str | None = None


@dataclass(frozen=True)
class Dataset:
    hash: str
    path: str
    format: str
    rows: int
    columns: list
    created_at: str


@dataclass(frozen=True)
class Metric:
    id: int
    run_id: str
    name: str
    value: float | None
    scope: MetricScope
    slice: str
    slice_value: str
    step: int | None
    model_version: int | None
    created_at: str


@dataclass(frozen=True)
class MetricValue:
    """A candidate's metric on the whole held-out set: what a table of many runs shows."""

    run_id: str
    name: str
    value: float | None


@dataclass(frozen=True)
class ModelVersion:
    id: int
    pipeline: str
    version: int
    run_id: str
    task: str
    artifact_uri: str
    sha256: str
    signature: dict
    stats: dict
    blessed: bool
    bad: bool
    created_at: str

    @property
    def ref(self) -> str:
        return f"{self.pipeline}:{self.version}"


@dataclass(frozen=True)
class Validation:
    id: int
    run_id: str
    suite: str | None
    success: bool
    expectations: list
    drift: list
    baseline_version: int | None
    created_at: str


@dataclass(frozen=True)
class RuleOutcome:
    """One check of one gate rule: a (metric, slice value, min|max|max_drop) against the
    evaluation."""

    rule: str
    metric: str
    slice: str | None
    slice_value: str | None
    kind: RuleKind
    observed: float | None
    threshold: float  # NaN for the no_gates outcome
    baseline: float | None  # production's value on the same rows, when there is one
    passed: bool
    reason: str
    line: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RuleOutcome:
        """An outcome as the store keeps it: a JSON object of these fields, where NaN and
        infinities are text (JSON has no such numbers)."""
        return cls(**{**{f.name: data[f.name] for f in fields(cls)}, "kind": RuleKind(data["kind"]),
                      "observed": _number(data["observed"]), "baseline": _number(data["baseline"]),
                      "threshold": _number(data["threshold"])})


def _number(v: Any) -> float | None:
    return None if v is None else float(v)


@dataclass(frozen=True)
class GateDecision:
    id: int
    run_id: str
    model_version_id: int | None
    passed: bool
    rules: tuple[RuleOutcome, ...]
    baseline_version: int | None
    overridden: bool
    override_by: str | None
    override_reason: str | None
    created_at: str

    @property
    def blessed(self) -> bool:
        return self.passed or self.overridden


@dataclass(frozen=True)
class Image:
    id: int
    model_version_id: int
    image_id: str
    reference: str
    digest: str | None
    size_bytes: int | None
    infra_status: InfraStatus
    infra_report: dict
    created_at: str
    pushed_at: str | None


@dataclass(frozen=True)
class Deployment:
    id: int
    pipeline: str
    environment: str
    model_version_id: int
    image_ref: str
    target: str
    action: DeployAction
    status: DeploymentStatus
    current: bool
    actor: str | None
    reason: str | None
    url: str | None
    details: dict
    started_at: str
    ended_at: str | None


@dataclass(frozen=True)
class Approval:
    id: int
    model_version_id: int
    environment: str
    approver: str
    source: ApprovalSource
    details: dict
    created_at: str


@dataclass(frozen=True)
class Lock:
    """A lock held in the store: ``holder`` says who (``actor@host:pid#token``), ``owner`` the
    process as :mod:`cd4ml.store.liveness` names it (None for a lock an older cd4ml took)."""

    name: str
    holder: str
    expires_at: float
    owner: str | None = None
    acquired_at: str | None = None
    heartbeat_at: str | None = None

    @property
    def who(self) -> str:
        """The holder as people read it: the actor, the process and since when."""
        actor = self.holder.rsplit("#", 1)[0]
        host, _, rest = (self.owner or "").partition(":")
        pid = rest.partition(":")[0]
        where = f" (pid {pid} on {host})" if pid else ""
        since = f" since {self.acquired_at}" if self.acquired_at else ""
        return f"{actor}{where}{since}"


@dataclass(frozen=True)
class ModelSummary:
    """A model version without its signature and training statistics: what a table of
    thousands of runs needs, without parsing kilobytes of JSON per row."""

    id: int
    pipeline: str
    version: int
    run_id: str
    blessed: bool
    bad: bool

    @property
    def ref(self) -> str:
        return f"{self.pipeline}:{self.version}"


@cache
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@cache
def _decoders(cls: type) -> Decoders:
    """How each field of ``cls`` is made from its column: states become their enum, a gate's
    rules their outcomes; everything else is taken as the database gives it."""
    out: Decoders = {name: {m.value: m for m in hint}.__getitem__  # a dict: fast on many rows
                     for name, hint in get_type_hints(cls).items()
                     if isinstance(hint, type) and issubclass(hint, StrEnum)}
    if cls is GateDecision:
        out["rules"] = lambda rules: tuple(RuleOutcome.from_json(r) for r in rules or ())
    return out


def _to(cls: type[T], row: Any) -> T:
    m = row._mapping
    decode = _decoders(cls)
    return cls(**{name: decode[name](m[name]) if name in decode else m[name]
                  for name in _names(cls)})


def _all(cls: type[T], result: Any) -> list[T]:
    """Every row of a result as ``cls``: column positions are looked up once, not per row
    (the runs table turns tens of thousands of rows at a time)."""
    keys = list(result.keys())
    names = _names(cls)
    at = [keys.index(name) for name in names]
    decode = _decoders(cls)
    decoded = [(j, decode[name]) for j, name in enumerate(names) if name in decode]
    out = []
    for row in result:
        values = [row[i] for i in at]
        for j, fn in decoded:
            values[j] = fn(values[j])
        out.append(cls(*values))
    return out
