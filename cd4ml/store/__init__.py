"""The metadata and lineage store: data sets, runs, validations, metrics, gates, model versions,
images, deployments, approvals, locks, and monitoring (baselines, labels, results:
``watch.py``).

Embedded SQLite by default (``.cd4ml/cd4ml.db`` in the working repository), another SQLite file
or a PostgreSQL database otherwise (``CD4ML_STORE_URL``, e.g. ``postgresql+psycopg://...``).
Several CI jobs may write at once: SQLite runs in WAL mode and every write transaction starts
with ``BEGIN IMMEDIATE`` (so two writers queue on the busy timeout instead of failing with
"database is locked"); model version numbers come from ``max + 1`` under a unique constraint and
are retried on a clash, which is what keeps them unique on PostgreSQL too. The schema is built by named migrations, each applied in its
own transaction together with its bookkeeping row; opening a store whose schema is current only
reads, so read-only commands work on a read-only database and never queue behind a writer.

The package: ``migrations.py`` holds the frozen schema history (``MIGRATIONS``), ``schema.py``
the tables the queries use, ``records.py`` the frozen dataclass each query returns,
``engine.py`` how the database is opened; ``Store`` is here, and everything is importable from
``cd4ml.store``.
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import sqlalchemy as sa

from cd4ml.errors import StoreError
from cd4ml.states import (
    ApprovalSource,
    DeployAction,
    DeploymentStatus,
    InfraStatus,
    MetricScope,
    RunKind,
    RunStatus,
)
from cd4ml.store import liveness
from cd4ml.store.engine import create_engine, first_line, redact
from cd4ml.store.migrations import (
    MIGRATIONS,
    Migration,
    applied,
    check_dialect,
    pending,
    prepare_bookkeeping,
    schema_migrations,
)
from cd4ml.store.records import (
    Approval,
    Dataset,
    Deployment,
    GateDecision,
    Image,
    Lock,
    Metric,
    MetricValue,
    ModelSummary,
    ModelVersion,
    RuleOutcome,
    Run,
    Validation,
    _all,
    _to,
)
from cd4ml.store.schema import (
    approvals,
    datasets,
    deployments,
    gate_decisions,
    images,
    locks,
    metadata,
    metrics,
    model_versions,
    runs,
    validations,
)
from cd4ml.store.steps import DeploymentStep, StepRecords
from cd4ml.store.watch import Label, Monitoring, PredictionBaseline, WatchRecords

__all__ = [
    "MIGRATIONS", "Approval", "Dataset", "Deployment", "DeploymentStep", "GateDecision", "Image", "Label", "Lock",
    "Metric", "MetricValue", "Migration", "ModelSummary", "ModelVersion", "Monitoring",
    "PredictionBaseline", "RuleOutcome", "Run", "Store", "Validation", "approvals", "datasets",
    "default_url", "deployments", "gate_decisions", "images", "locks", "metadata", "metrics",
    "model_versions", "now", "redact", "runs", "schema_migrations", "validations",
]


def _inserted_id(result: sa.CursorResult[Any]) -> int:
    """The primary key of the row an INSERT made (every table has one)."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def now() -> str:
    """UTC time as ISO 8601 text: sorts correctly as a string on every database."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    # bound the number of bound parameters per statement (SQLite's limit, PostgreSQL's planner)
    for i in range(0, len(items), size):
        yield items[i:i + size]


def default_url(root: Path | None = None) -> str:
    """``CD4ML_STORE_URL``, or a SQLite file under ``.cd4ml/`` of the working directory."""
    url = os.environ.get("CD4ML_STORE_URL")
    if url:
        return url
    from cd4ml.paths import home

    base = root / ".cd4ml" if root is not None and not os.environ.get("CD4ML_HOME") else home()
    return f"sqlite:///{base / 'cd4ml.db'}"


class Store(WatchRecords, StepRecords):
    """A connection to the metadata store. ``Store("sqlite://")`` is an in-memory store; a URL
    of a registered backend (``git+origin``, see backends.py) opens that backend instead."""

    def __new__(cls, url: str | None = None) -> Self:
        if cls is Store:
            from cd4ml.store.backends import backend_for

            return super().__new__(backend_for(url or default_url()) or cls)  # type: ignore[return-value]
        return super().__new__(cls)

    def __init__(self, url: str | None = None):
        self.url = url or default_url()
        self.engine, self.is_sqlite = create_engine(self.url)
        self._watch: sqlite3.Connection | None = None  # see fingerprint()
        self._watch_lock = threading.Lock()
        self.migrate()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[sa.Connection]:
        """A short write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as e:
            raise StoreError(f"store {redact(self.url)}: {first_line(e)}; check that it is reachable") from None

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read-only transaction: it does not queue behind writers."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(cd4ml_read=True)
                with conn.begin():
                    yield conn
        except sa.exc.OperationalError as e:
            raise StoreError(f"store {redact(self.url)}: {first_line(e)}; check that it is reachable") from None

    # ---- migrations

    def migrate(self) -> list[str]:
        """Apply the migrations this store has not seen, each in its own transaction with its
        bookkeeping row; return the names applied now. A store that is current is only read."""
        with self.read() as conn:
            check_dialect(conn)
            done = applied(conn)
        todo = pending(done)
        if done is not None and not todo:
            return []
        step = "its bookkeeping"
        try:
            with self.engine.begin() as conn:
                # one migrator at a time: under the lock the next one sees the last one's work
                self._migration_lock(conn)
                prepare_bookkeeping(conn, now())
            names = []
            for migration in todo:
                step = f"migration {migration.name}"
                if self._apply(migration):
                    names.append(migration.name)
            return names
        except sa.exc.DBAPIError as e:
            raise StoreError(f"store {redact(self.url)}: cannot upgrade {step}: {first_line(e)}; "
                             "it was rolled back: open the store once with write access") from None

    def _apply(self, migration: Migration) -> bool:
        with self.engine.begin() as conn:
            self._migration_lock(conn)
            if migration.name in (applied(conn) or ()):
                return False  # another process applied it while this one waited for the lock
            migration.apply(conn)
            conn.execute(schema_migrations.insert().values(name=migration.name, applied_at=now()))
        return True

    def _migration_lock(self, conn: sa.Connection) -> None:
        # SQLite: BEGIN IMMEDIATE already is one
        if not self.is_sqlite:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242)"))

    def applied_migrations(self) -> list[str]:
        """The names of the migrations applied to this store, oldest first."""
        with self.read() as conn:
            return applied(conn) or []

    # ---- data sets and runs

    def record_dataset(self, hash: str, path: str, format: str, rows: int, columns: list) -> Dataset:
        try:
            with self.tx() as conn:
                row = conn.execute(sa.select(datasets).where(datasets.c.hash == hash)).first()
                if row is None:
                    conn.execute(datasets.insert().values(
                        hash=hash, path=path, format=format, rows=rows, columns=columns, created_at=now()))
                    row = conn.execute(sa.select(datasets).where(datasets.c.hash == hash)).first()
        except sa.exc.IntegrityError:
            # another job recorded the same data at the same moment (PostgreSQL): theirs is ours
            with self.read() as conn:
                row = conn.execute(sa.select(datasets).where(datasets.c.hash == hash)).first()
        return _to(Dataset, row)

    def dataset(self, hash: str) -> Dataset | None:
        with self.read() as conn:
            row = conn.execute(sa.select(datasets).where(datasets.c.hash == hash)).first()
        return _to(Dataset, row) if row else None

    def start_run(self, pipeline: str, *, kind: RunKind = RunKind.PIPELINE, git_commit: str | None = None,
                  branch: str | None = None, actor: str | None = None, spec_hash: str | None = None,
                  code_hash: str | None = None, data_hash: str | None = None,
                  cache_key: str | None = None, params: dict | None = None,
                  tags: dict | None = None) -> Run:
        run_id = uuid.uuid4().hex[:12]
        with self.tx() as conn:
            conn.execute(runs.insert().values(
                id=run_id, pipeline=pipeline, kind=kind, status=RunStatus.RUNNING, git_commit=git_commit,
                branch=branch, actor=actor, spec_hash=spec_hash, code_hash=code_hash,
                data_hash=data_hash, cache_key=cache_key, params=params or {}, tags=tags or {},
                started_at=now(), holder=liveness.holder(), heartbeat_at=now()))
        return self.run(run_id)

    def beat(self, run_id: str) -> None:
        """Refresh a working run's heartbeat (:class:`cd4ml.store.liveness.Heartbeat`)."""
        with self.tx() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id, runs.c.status == RunStatus.RUNNING)
                         .values(heartbeat_at=now()))

    def abandon_dead_runs(self, pipeline: str) -> list[Run]:
        """Mark ``abandoned`` the runs of ``pipeline`` still ``running`` whose process is gone
        (killed mid-way), and ``bad`` the model versions they registered but never got blessed
        (perhaps without their artifact): nothing builds or deploys those. Returns the runs."""
        with self.read() as conn:
            rows = conn.execute(sa.select(runs).where(runs.c.pipeline == pipeline,
                                                      runs.c.status == RunStatus.RUNNING)).all()
        dead = [r for r in (_to(Run, row) for row in rows) if liveness.is_abandoned(r)]
        for r in dead:
            with self.tx() as conn:
                done = conn.execute(runs.update().where(runs.c.id == r.id,
                                                        runs.c.status == RunStatus.RUNNING)
                                    .values(status=RunStatus.ABANDONED, ended_at=now(),
                                            error=f"abandoned: the process running it ({r.holder}) "
                                                  "ended without finishing it"))
                if done.rowcount:
                    conn.execute(model_versions.update().where(model_versions.c.run_id == r.id,
                                                               model_versions.c.blessed.is_(False))
                                 .values(bad=True))
        return [self.run(r.id) for r in dead]

    def update_run(self, run_id: str, **values: Any) -> Run:
        with self.tx() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(**values))
        return self.run(run_id)

    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None,
                   reused_from: str | None = None) -> Run:
        from cd4ml.secrets import redact

        return self.update_run(run_id, status=status, error=redact(error) if error else error,
                               reused_from=reused_from, ended_at=now())

    def run(self, run_id: str) -> Run:
        with self.read() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
            if row is None:  # allow a unique prefix, as git does for commits
                rows = conn.execute(sa.select(runs).where(runs.c.id.like(f"{run_id}%")).limit(2)).all()
                row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise StoreError(f"no run {run_id!r}; see 'cd4ml runs' for run ids")
        return _to(Run, row)

    def runs(self, pipeline: str | None = None, limit: int = 50, commit: str | None = None) -> list[Run]:
        """The newest runs first; of ``pipeline``, and at git ``commit`` (or a prefix of it)."""
        q = sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit)
        if pipeline:
            q = q.where(runs.c.pipeline == pipeline)
        if commit:
            q = q.where(runs.c.git_commit.startswith(commit, autoescape=True))
        with self.read() as conn:
            return _all(Run, conn.execute(q))

    def fingerprint(self) -> str:
        """A short text that changes whenever anything is recorded or updated: views that
        tabulate the whole store (the web view's runs table) cache on it. On a SQLite file it is
        SQLite's own change counter, read on a connection of its own (``PRAGMA data_version``
        moves whenever any other connection commits): no table is scanned. Elsewhere one query
        of counts and maxima."""
        database = sa.engine.make_url(self.url).database if self.is_sqlite else None
        if database and database != ":memory:":
            with self._watch_lock:
                if self._watch is None:
                    self._watch = sqlite3.connect(database, check_same_thread=False)
                return f"sqlite:{self._watch.execute('PRAGMA data_version').fetchone()[0]}"
        parts = [
            sa.select(sa.func.count()).select_from(runs).scalar_subquery(),
            sa.select(sa.func.max(runs.c.started_at)).scalar_subquery(),
            sa.select(sa.func.max(runs.c.ended_at)).scalar_subquery(),
            sa.select(sa.func.max(metrics.c.id)).scalar_subquery(),
            sa.select(sa.func.max(gate_decisions.c.id)).scalar_subquery(),
            sa.select(sa.func.max(validations.c.id)).scalar_subquery(),
            sa.select(sa.func.max(model_versions.c.id)).scalar_subquery(),
            sa.select(sa.func.count()).select_from(model_versions)
            .where(model_versions.c.bad.is_(True)).scalar_subquery(),
            sa.select(sa.func.count()).select_from(model_versions)
            .where(model_versions.c.blessed.is_(True)).scalar_subquery(),
            sa.select(sa.func.max(images.c.id)).scalar_subquery(),
            sa.select(sa.func.max(images.c.pushed_at)).scalar_subquery(),
            sa.select(sa.func.count()).select_from(images)
            .where(images.c.infra_status == "passed").scalar_subquery(),
            sa.select(sa.func.max(deployments.c.id)).scalar_subquery(),
            sa.select(sa.func.max(deployments.c.ended_at)).scalar_subquery(),
            sa.select(sa.func.max(approvals.c.id)).scalar_subquery(),
        ]
        by_status = (sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
                     .order_by(runs.c.status))
        with self.read() as conn:
            row = conn.execute(sa.select(*parts)).one()
            statuses = conn.execute(by_status).all()
        return "|".join([*("" if v is None else str(v) for v in row),
                         *(f"{status}={n}" for status, n in statuses)])

    def pipelines(self) -> list[str]:
        """The names of the pipelines with recorded runs, sorted."""
        with self.read() as conn:
            return sorted(conn.execute(sa.select(runs.c.pipeline).distinct()).scalars())

    def find_cached_run(self, pipeline: str, cache_key: str) -> Run | None:
        """The newest completed run with these inputs that produced a model."""
        q = (sa.select(runs).join(model_versions, model_versions.c.run_id == runs.c.id)
             .where(runs.c.pipeline == pipeline, runs.c.cache_key == cache_key,
                    runs.c.status.in_((RunStatus.SUCCEEDED, RunStatus.GATE_FAILED)), runs.c.reused_from.is_(None))
             .order_by(runs.c.started_at.desc()).limit(1))
        with self.read() as conn:
            row = conn.execute(q).first()
        return _to(Run, row) if row else None

    # ---- validation, metrics, gates

    def record_validation(self, run_id: str, suite: str | None, success: bool, expectations: list,
                          drift: list, baseline_version: int | None) -> Validation:
        with self.tx() as conn:
            vid = _inserted_id(conn.execute(validations.insert().values(
                run_id=run_id, suite=suite, success=success, expectations=expectations,
                drift=drift, baseline_version=baseline_version, created_at=now())))
            row = conn.execute(sa.select(validations).where(validations.c.id == vid)).first()
        return _to(Validation, row)

    def validation(self, run_id: str) -> Validation | None:
        q = sa.select(validations).where(validations.c.run_id == run_id).order_by(validations.c.id.desc())
        with self.read() as conn:
            row = conn.execute(q).first()
        return _to(Validation, row) if row else None

    def record_metrics(self, run_id: str, rows: list[dict]) -> None:
        """Each row: name, value, and optionally scope, slice, slice_value, step, model_version."""
        if not rows:
            return
        stamp = now()
        values = []
        for r in rows:
            v = r.get("value")
            v = None if v is None or not math.isfinite(float(v)) else float(v)
            values.append({"run_id": run_id, "name": r["name"], "value": v,
                           "scope": r.get("scope", MetricScope.CANDIDATE), "slice": r.get("slice") or "",
                           "slice_value": str(r.get("slice_value") or ""), "step": r.get("step"),
                           "model_version": r.get("model_version"), "created_at": stamp})
        with self.tx() as conn:
            conn.execute(metrics.insert(), values)

    def metrics(self, run_id: str) -> list[Metric]:
        q = sa.select(metrics).where(metrics.c.run_id == run_id).order_by(metrics.c.id)
        with self.read() as conn:
            return [_to(Metric, r) for r in conn.execute(q)]

    def overall_metrics(self, run_ids: Collection[str] | None = None) -> list[MetricValue]:
        """The candidate metrics on the whole held-out set (no production values, no slices)
        of many runs (None: of every run), in logging order (the last step of a curve comes
        last), in a few queries: for views that tabulate runs side by side."""
        q = (sa.select(metrics.c.run_id, metrics.c.name, metrics.c.value)
             .where(metrics.c.scope == MetricScope.CANDIDATE, metrics.c.slice == "").order_by(metrics.c.id))
        return self._in_chunks(q, metrics.c.run_id, run_ids, MetricValue)

    def _in_chunks(self, q: sa.Select, column: sa.Column, values: Collection[str] | None,
                   cls: type[T]) -> list[T]:
        with self.read() as conn:
            if values is None:
                return _all(cls, conn.execute(q))
            out: list[T] = []
            for chunk in _chunks(list(dict.fromkeys(values))):
                out += _all(cls, conn.execute(q.where(column.in_(chunk))))
            return out

    def record_gate(self, run_id: str, model_version_id: int | None, passed: bool,
                    rules: Sequence[RuleOutcome],
                    baseline_version: int | None, override_by: str | None = None,
                    override_reason: str | None = None) -> GateDecision:
        overridden = bool(override_by) and not passed
        with self.tx() as conn:
            gid = _inserted_id(conn.execute(gate_decisions.insert().values(
                run_id=run_id, model_version_id=model_version_id, passed=passed, rules=[asdict(r) for r in rules],
                baseline_version=baseline_version, overridden=overridden,
                override_by=override_by if overridden else None,
                override_reason=override_reason if overridden else None,
                created_at=now())))
            if model_version_id is not None:
                conn.execute(model_versions.update().where(model_versions.c.id == model_version_id)
                             .values(blessed=passed or overridden))
            row = conn.execute(sa.select(gate_decisions).where(gate_decisions.c.id == gid)).first()
        return _to(GateDecision, row)

    def gate(self, run_id: str) -> GateDecision | None:
        q = (sa.select(gate_decisions).where(gate_decisions.c.run_id == run_id)
             .order_by(gate_decisions.c.id.desc()))
        with self.read() as conn:
            row = conn.execute(q).first()
        return _to(GateDecision, row) if row else None

    # ---- model versions

    def register_model(self, pipeline: str, run_id: str, task: str, artifact_uri: str, sha256: str,
                       signature: dict, stats: dict) -> ModelVersion:
        """Give the model the next integer version of its pipeline; unique under concurrency."""
        for attempt in range(50):
            try:
                with self.tx() as conn:
                    top = conn.execute(sa.select(sa.func.max(model_versions.c.version))
                                       .where(model_versions.c.pipeline == pipeline)).scalar() or 0
                    mid = _inserted_id(conn.execute(model_versions.insert().values(
                        pipeline=pipeline, version=top + 1, run_id=run_id, task=task,
                        artifact_uri=artifact_uri, sha256=sha256, signature=signature,
                        stats=stats, blessed=False, bad=False, created_at=now()
                    )))
                return self.model_by_id(mid)
            except sa.exc.IntegrityError:
                time.sleep(0.01 * (attempt + 1))
        raise StoreError(f"could not allocate a model version for {pipeline!r}: too many concurrent writers")

    def model_by_id(self, model_id: int) -> ModelVersion:
        with self.read() as conn:
            row = conn.execute(sa.select(model_versions).where(model_versions.c.id == model_id)).first()
        if row is None:
            raise StoreError(f"no model version with id {model_id}")
        return _to(ModelVersion, row)

    def model(self, pipeline: str, version: int) -> ModelVersion:
        with self.read() as conn:
            row = conn.execute(sa.select(model_versions).where(
                model_versions.c.pipeline == pipeline, model_versions.c.version == version)).first()
        if row is None:
            raise StoreError(f"no model version {pipeline}:{version}; see 'cd4ml models'")
        return _to(ModelVersion, row)

    def model_for_run(self, run_id: str) -> ModelVersion | None:
        with self.read() as conn:
            row = conn.execute(sa.select(model_versions).where(model_versions.c.run_id == run_id)
                               .order_by(model_versions.c.id.desc())).first()
        return _to(ModelVersion, row) if row else None

    def models(self, pipeline: str | None = None, limit: int = 50) -> list[ModelVersion]:
        q = sa.select(model_versions).order_by(model_versions.c.id.desc()).limit(limit)
        if pipeline:
            q = q.where(model_versions.c.pipeline == pipeline)
        with self.read() as conn:
            return [_to(ModelVersion, r) for r in conn.execute(q)]

    def model_summaries(self, run_ids: Collection[str] | None = None) -> list[ModelSummary]:
        """The model versions trained by many runs (None: all), without their signatures and
        statistics, in a few queries."""
        cols = [model_versions.c[name] for name in ("id", "pipeline", "version", "run_id",
                                                    "blessed", "bad")]
        q = sa.select(*cols).order_by(model_versions.c.id)
        return self._in_chunks(q, model_versions.c.run_id, run_ids, ModelSummary)

    def latest_model(self, pipeline: str, blessed: bool | None = None) -> ModelVersion | None:
        q = (sa.select(model_versions).where(model_versions.c.pipeline == pipeline)
             .order_by(model_versions.c.version.desc()).limit(1))
        if blessed is not None:
            q = q.where(model_versions.c.blessed == blessed, model_versions.c.bad.is_(False))
        with self.read() as conn:
            row = conn.execute(q).first()
        return _to(ModelVersion, row) if row else None

    def set_artifact_uri(self, model_id: int, uri: str) -> ModelVersion:
        with self.tx() as conn:
            conn.execute(model_versions.update().where(model_versions.c.id == model_id)
                         .values(artifact_uri=uri))
        return self.model_by_id(model_id)

    def set_model_flags(self, model_id: int, **flags: bool) -> ModelVersion:
        with self.tx() as conn:
            conn.execute(model_versions.update().where(model_versions.c.id == model_id).values(**flags))
        return self.model_by_id(model_id)

    def production_model(self, pipeline: str, environment: str | None) -> ModelVersion | None:
        """The baseline a candidate is compared with: the version serving in ``environment``
        (the last of the promotion order) now; None when nothing serves there. Never the
        newest blessed version: comparing each candidate with the one before would let a
        metric slide a little every run."""
        if not environment:
            return None
        dep = self.current_deployment(pipeline, environment)
        return self.model_by_id(dep.model_version_id) if dep is not None else None

    # ---- images, deployments, approvals

    def record_image(self, model_version_id: int, image_id: str, reference: str,
                     size_bytes: int | None, infra_status: InfraStatus = InfraStatus.PENDING,
                     infra_report: dict | None = None) -> Image:
        with self.tx() as conn:
            iid = _inserted_id(conn.execute(images.insert().values(
                model_version_id=model_version_id, image_id=image_id, reference=reference,
                size_bytes=size_bytes, infra_status=infra_status, infra_report=infra_report or {},
                created_at=now())))
        return self.image(iid)

    def update_image(self, image_pk: int, **values: Any) -> Image:
        with self.tx() as conn:
            conn.execute(images.update().where(images.c.id == image_pk).values(**values))
        return self.image(image_pk)

    def image(self, image_pk: int) -> Image:
        with self.read() as conn:
            row = conn.execute(sa.select(images).where(images.c.id == image_pk)).first()
        if row is None:
            raise StoreError(f"no image record {image_pk}")
        return _to(Image, row)

    def images_for(self, model_version_id: int) -> list[Image]:
        q = sa.select(images).where(images.c.model_version_id == model_version_id).order_by(images.c.id.desc())
        with self.read() as conn:
            return [_to(Image, r) for r in conn.execute(q)]

    def start_deployment(self, pipeline: str, environment: str, model_version_id: int,
                         image_ref: str, target: str, action: DeployAction, actor: str | None,
                         reason: str | None = None, details: dict | None = None) -> Deployment:
        with self.tx() as conn:
            did = _inserted_id(conn.execute(deployments.insert().values(
                pipeline=pipeline, environment=environment, model_version_id=model_version_id,
                image_ref=image_ref, target=target, action=action, status=DeploymentStatus.IN_PROGRESS,
                current=False, actor=actor, reason=reason, details=details or {},
                started_at=now())))
        return self.deployment(did)

    def finish_deployment(self, deployment_id: int, status: DeploymentStatus, url: str | None = None,
                          details: dict | None = None) -> Deployment:
        """Close a deployment; a healthy one becomes the environment's only current one, a
        ``down`` one (the environment taken down) leaves it with none."""
        with self.tx() as conn:
            dep = _to(Deployment, conn.execute(
                sa.select(deployments).where(deployments.c.id == deployment_id)).first())
            values: dict[str, Any] = {"status": status, "ended_at": now()}
            if url is not None:
                values["url"] = url
            if details is not None:
                values["details"] = {**dep.details, **details}
            if status in (DeploymentStatus.HEALTHY, DeploymentStatus.DOWN):
                # a healthy release replaces the current one; a take-down leaves none current
                conn.execute(deployments.update().where(
                    deployments.c.pipeline == dep.pipeline,
                    deployments.c.environment == dep.environment,
                    deployments.c.current.is_(True)).values(current=False, status=DeploymentStatus.REPLACED))
                values["current"] = status == DeploymentStatus.HEALTHY
            conn.execute(deployments.update().where(deployments.c.id == deployment_id).values(**values))
        return self.deployment(deployment_id)

    def deployment(self, deployment_id: int) -> Deployment:
        with self.read() as conn:
            row = conn.execute(sa.select(deployments).where(deployments.c.id == deployment_id)).first()
        if row is None:
            raise StoreError(f"no deployment {deployment_id}")
        return _to(Deployment, row)

    def current_deployment(self, pipeline: str, environment: str) -> Deployment | None:
        q = sa.select(deployments).where(
            deployments.c.pipeline == pipeline, deployments.c.environment == environment,
            deployments.c.current.is_(True))
        with self.read() as conn:
            row = conn.execute(q).first()
        return _to(Deployment, row) if row else None

    def current_deployments(self, pipeline: str | None = None) -> list[Deployment]:
        """What serves where now: the current deployment of every environment (of a pipeline)."""
        q = sa.select(deployments).where(deployments.c.current.is_(True)).order_by(deployments.c.id)
        if pipeline:
            q = q.where(deployments.c.pipeline == pipeline)
        with self.read() as conn:
            return [_to(Deployment, r) for r in conn.execute(q)]

    def deployments(self, pipeline: str | None = None, environment: str | None = None,
                    model_version_id: int | None = None, limit: int = 100) -> list[Deployment]:
        q = sa.select(deployments).order_by(deployments.c.id.desc()).limit(limit)
        if pipeline:
            q = q.where(deployments.c.pipeline == pipeline)
        if environment:
            q = q.where(deployments.c.environment == environment)
        if model_version_id is not None:
            q = q.where(deployments.c.model_version_id == model_version_id)
        with self.read() as conn:
            return [_to(Deployment, r) for r in conn.execute(q)]

    def record_approval(self, model_version_id: int, environment: str, approver: str,
                        source: ApprovalSource, details: dict | None = None) -> Approval:
        with self.tx() as conn:
            aid = _inserted_id(conn.execute(approvals.insert().values(
                model_version_id=model_version_id, environment=environment, approver=approver,
                source=source, details=details or {}, created_at=now())))
            row = conn.execute(sa.select(approvals).where(approvals.c.id == aid)).first()
        return _to(Approval, row)

    def approvals(self, model_version_id: int, environment: str | None = None) -> list[Approval]:
        q = sa.select(approvals).where(approvals.c.model_version_id == model_version_id)
        if environment:
            q = q.where(approvals.c.environment == environment)
        with self.read() as conn:
            return [_to(Approval, r) for r in conn.execute(q.order_by(approvals.c.id))]

    # ---- locks

    @contextmanager
    def lock(self, name: str, holder: str, timeout: float = 600.0, ttl: float = 900.0, *,
             on_wait: Callable[[Lock], None] | None = None,
             on_takeover: Callable[[Lock], None] | None = None) -> Iterator[None]:
        """A lock held in the store, so that jobs on different machines queue on it. It records
        its process and keeps a heartbeat (:mod:`cd4ml.store.liveness`) while held: a lock whose
        process is gone (killed on this host, or silent for longer than ``STALE_AFTER`` on
        another) is taken over at once and ``on_takeover`` told; one taken by an older cd4ml,
        without a process, is taken over once its ``ttl`` has passed. A waiter tells ``on_wait``
        who it waits for, once per holder."""
        deadline = time.monotonic() + timeout
        token = f"{holder}#{uuid.uuid4().hex[:8]}"
        told: str | None = None
        while True:
            try:
                with self.tx() as conn:
                    conn.execute(locks.delete().where(locks.c.name == name, locks.c.expires_at < time.time()))
                    stamp = now()
                    conn.execute(locks.insert().values(
                        name=name, holder=token, expires_at=time.time() + ttl,
                        owner=liveness.holder(), acquired_at=stamp, heartbeat_at=stamp))
                break
            except sa.exc.IntegrityError:
                held = self.held_lock(name)
                if held is None:
                    continue  # released meanwhile
                if liveness.process_gone(held.owner, held.heartbeat_at):
                    if self.break_lock(name, held.holder) and on_takeover is not None:
                        on_takeover(held)
                    continue
                if time.monotonic() > deadline:
                    raise StoreError(f"lock {name!r} is held by {held.who}, which is still "
                                     "working; wait for it, or stop that job") from None
                if on_wait is not None and told != held.holder:
                    told = held.holder
                    on_wait(held)
                time.sleep(0.2)
        try:
            with liveness.Pulse(functools.partial(self.beat_lock, name, token, ttl),
                                f"cd4ml-lock-{name}"):
                yield
        finally:
            with self.tx() as conn:
                conn.execute(locks.delete().where(locks.c.name == name, locks.c.holder == token))

    def held_lock(self, name: str) -> Lock | None:
        """The lock ``name`` as held now, or None when nobody holds it."""
        with self.read() as conn:
            row = conn.execute(sa.select(locks).where(locks.c.name == name)).first()
        return _to(Lock, row) if row else None

    def beat_lock(self, name: str, holder: str, ttl: float) -> None:
        """Refresh a held lock's heartbeat (and push its expiry on, for older readers)."""
        with self.tx() as conn:
            conn.execute(locks.update().where(locks.c.name == name, locks.c.holder == holder)
                         .values(heartbeat_at=now(), expires_at=time.time() + ttl))

    def break_lock(self, name: str, holder: str) -> bool:
        """Remove lock ``name`` if ``holder`` still holds it (a dead one): whether it did."""
        with self.tx() as conn:
            gone = conn.execute(locks.delete().where(locks.c.name == name, locks.c.holder == holder))
        return bool(gone.rowcount)
