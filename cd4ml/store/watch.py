"""The store's monitoring records: prediction baselines, labels, monitoring results.

A mixin of :class:`cd4ml.store.Store`, kept apart so that the lineage store's core stays one
concept; the tables are in :mod:`cd4ml.store.schema` (migration "monitoring").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cd4ml.store.records import T, _all, _to
from cd4ml.store.schema import labels, monitorings, prediction_baselines


@dataclass(frozen=True)
class PredictionBaseline:
    """A version's predictions on its held-out rows at evaluation time."""

    model_version_id: int
    rows: int
    predictions: dict  # cd4ml.stages.drift statistics of the predicted values
    calibration: dict  # {"edges": [...], "count": [...], "correct": [...]} or {}
    created_at: str


@dataclass(frozen=True)
class Label:
    """Ground truth for one logged prediction row."""

    id: int
    pipeline: str
    request_id: str
    row_index: int
    label: Any
    slices: dict
    label_time: str | None
    prediction_time: str
    model_version: int
    source: str
    created_at: str


@dataclass(frozen=True)
class Monitoring:
    """One ``cd4ml monitor`` finding: a version served in an environment over a window."""

    id: int
    pipeline: str
    environment: str
    model_version_id: int
    window_from: str
    window_to: str
    rows: int
    breached: bool
    findings: dict
    created_at: str


class WatchRecords:
    """Store methods for monitoring; ``tx``/``read`` come from the Store."""

    tx: Callable[[], AbstractContextManager[sa.Connection]]
    read: Callable[[], AbstractContextManager[sa.Connection]]

    def record_prediction_baseline(self, model_version_id: int, rows: int, predictions: dict,
                                   calibration: dict) -> PredictionBaseline:
        """Keep (or replace: a re-evaluation scores the same rows) a version's baseline."""
        from cd4ml.store import now

        with self.tx() as conn:
            conn.execute(prediction_baselines.delete().where(
                prediction_baselines.c.model_version_id == model_version_id))
            conn.execute(prediction_baselines.insert().values(
                model_version_id=model_version_id, rows=rows, predictions=predictions,
                calibration=calibration, created_at=now()))
        found = self.prediction_baseline(model_version_id)
        assert found is not None
        return found

    def prediction_baseline(self, model_version_id: int) -> PredictionBaseline | None:
        q = sa.select(prediction_baselines).where(
            prediction_baselines.c.model_version_id == model_version_id)
        with self.read() as conn:
            row = conn.execute(q).first()
        return _to(PredictionBaseline, row) if row else None

    def record_labels(self, rows: list[dict]) -> int:
        """Insert label rows not recorded yet (by pipeline, request id, row), all in one
        transaction; returns how many were new."""
        from cd4ml.store import now

        if not rows:
            return 0
        stamp = now()
        with self.tx() as conn:
            known = self._known_labels(conn, rows[0]["pipeline"], {r["request_id"] for r in rows})
            fresh = [{**r, "created_at": stamp} for r in rows
                     if (r["request_id"], r["row_index"]) not in known]
            if fresh:
                conn.execute(labels.insert(), fresh)
        return len(fresh)

    def recorded_labels(self, pipeline: str, request_ids: Iterable[str]) -> dict[tuple[str, int], Any]:
        """``(request_id, row) -> label`` of those already recorded among ``request_ids``."""
        with self.read() as conn:
            return self._known_labels(conn, pipeline, set(request_ids))

    @staticmethod
    def _known_labels(conn: sa.Connection, pipeline: str, ids: set[str]) -> dict[tuple[str, int], Any]:
        out: dict[tuple[str, int], Any] = {}
        chunk = sorted(ids)
        for i in range(0, len(chunk), 500):  # under every database's bound-parameter limit
            q = sa.select(labels.c.request_id, labels.c.row_index, labels.c.label).where(
                labels.c.pipeline == pipeline, labels.c.request_id.in_(chunk[i:i + 500]))
            out.update({(r.request_id, r.row_index): r.label for r in conn.execute(q)})
        return out

    def labels_between(self, pipeline: str, start: str, end: str) -> Iterator[Label]:
        """Labels of the predictions made in ``[start, end]`` (ISO times)."""
        q = sa.select(labels).where(labels.c.pipeline == pipeline,
                                    labels.c.prediction_time >= start,
                                    labels.c.prediction_time <= end).order_by(labels.c.id)
        with self.read() as conn:
            rows = [_to(Label, r) for r in conn.execute(q)]
        return iter(rows)

    def record_monitoring(self, pipeline: str, environment: str, model_version_id: int,
                          window_from: str, window_to: str, rows: int, breached: bool,
                          findings: dict) -> Monitoring:
        from cd4ml.store import _inserted_id, now

        with self.tx() as conn:
            mid = _inserted_id(conn.execute(monitorings.insert().values(
                pipeline=pipeline, environment=environment, model_version_id=model_version_id,
                window_from=window_from, window_to=window_to, rows=rows, breached=breached,
                findings=findings, created_at=now())))
            row = conn.execute(sa.select(monitorings).where(monitorings.c.id == mid)).first()
        return _to(Monitoring, row)

    def monitorings(self, pipeline: str | None = None, environment: str | None = None,
                    model_version_id: int | None = None, limit: int = 50) -> list[Monitoring]:
        """Monitoring results, newest first."""
        return self._newest(Monitoring, monitorings, limit, pipeline=pipeline,
                            environment=environment, model_version_id=model_version_id)

    def _newest(self, cls: type[T], table: sa.Table, limit: int, **given: object) -> list[T]:
        """Up to ``limit`` rows of ``table``, highest id first, whose columns equal the values
        given; a value left out (None, or an empty name) narrows nothing. The Store's listings
        use it too."""
        q = sa.select(table).order_by(table.c.id.desc()).limit(limit)
        for name, value in given.items():
            if value is not None and value != "":
                q = q.where(table.c[name] == value)
        with self.read() as conn:
            return _all(cls, conn.execute(q))
