"""The store's records: one frozen dataclass per table, as every query returns its rows."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    id: str
    pipeline: str
    kind: str
    status: str
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
    scope: str
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
class GateDecision:
    id: int
    run_id: str
    model_version_id: int | None
    passed: bool
    rules: list
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
    infra_status: str
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
    action: str
    status: str
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
    source: str
    details: dict
    created_at: str


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


def _to(cls: type[T], row: Any) -> T:
    m = row._mapping
    return cls(**{name: m[name] for name in _names(cls)})


def _all(cls: type[T], result: Any) -> list[T]:
    """Every row of a result as ``cls``: column positions are looked up once, not per row
    (the runs table turns tens of thousands of rows at a time)."""
    keys = list(result.keys())
    at = [keys.index(name) for name in _names(cls)]
    return [cls(*[row[i] for i in at]) for row in result]
