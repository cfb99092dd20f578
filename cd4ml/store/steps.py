"""The store's record of progressive releases: each canary or shadow step and its analysis.

A mixin of :class:`cd4ml.store.Store` (table ``deployment_steps``, migration
``0005_deployment_steps``). A step belongs to the deployment that runs it; ``cd4ml rollback``
during a release adds an ``abort_request`` row, which the running release reads between its
checks: the two processes meet in the store, as they would on two CI runners.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cd4ml.states import StepKind, StepStatus
from cd4ml.store.records import _to
from cd4ml.store.schema import deployment_steps


@dataclass(frozen=True)
class DeploymentStep:
    """One step of a progressive release, or a request to stop one."""

    id: int
    deployment_id: int
    kind: StepKind
    weight: int
    status: StepStatus
    analysis: dict  # cd4ml.release.analysis.Analysis.as_dict(), {} when none was made
    details: dict
    actor: str | None
    started_at: str
    ended_at: str | None


class StepRecords:
    """Store methods for progressive releases; ``tx``/``read``/``_update`` come from the Store."""

    tx: Callable[[], AbstractContextManager[sa.Connection]]
    read: Callable[[], AbstractContextManager[sa.Connection]]
    _update: Callable[[sa.Table, int | str, dict[str, Any]], None]

    def record_step(self, deployment_id: int, kind: StepKind, weight: int, status: StepStatus,
                    started_at: str, *, analysis: dict | None = None, details: dict | None = None,
                    actor: str | None = None) -> DeploymentStep:
        """Record a step (``ended_at`` left empty while it runs, or for an abort request)."""
        from cd4ml.store import now

        ended = None if status in (StepStatus.REQUESTED, StepStatus.RUNNING) else now()
        with self.tx() as conn:
            result = conn.execute(deployment_steps.insert().values(
                deployment_id=deployment_id, kind=kind, weight=weight, status=status,
                analysis=analysis or {}, details=details or {}, actor=actor,
                started_at=started_at, ended_at=ended))
            key = result.inserted_primary_key
            assert key is not None  # every table has a primary key
            sid = key[0]
            row = conn.execute(sa.select(deployment_steps).where(deployment_steps.c.id == sid)).first()
        return _to(DeploymentStep, row)

    def finish_step(self, step_id: int, status: StepStatus, *, analysis: dict | None = None,
                    details: dict | None = None) -> None:
        """End a running step with its verdict (its analysis and details replace the old)."""
        from cd4ml.store import now

        self._update(deployment_steps, step_id, {"status": status, "analysis": analysis or {},
                                                 "details": details or {}, "ended_at": now()})

    def deployment_steps(self, deployment_id: int) -> list[DeploymentStep]:
        """The steps of a deployment and any abort request, in the order recorded."""
        q = sa.select(deployment_steps).where(deployment_steps.c.deployment_id == deployment_id)
        with self.read() as conn:
            return [_to(DeploymentStep, r) for r in conn.execute(q.order_by(deployment_steps.c.id))]

    def abort_request(self, deployment_id: int) -> DeploymentStep | None:
        """The first request to stop a running release, if one was made."""
        q = sa.select(deployment_steps).where(
            deployment_steps.c.deployment_id == deployment_id,
            deployment_steps.c.kind == StepKind.ABORT_REQUEST).order_by(deployment_steps.c.id)
        with self.read() as conn:
            row = conn.execute(q).first()
        return _to(DeploymentStep, row) if row else None

    def steps_of(self, deployment_ids: list[int]) -> dict[int, list[DeploymentStep]]:
        """The steps of several deployments at once (history shows a page of them)."""
        out: dict[int, list[DeploymentStep]] = {i: [] for i in deployment_ids}
        if not deployment_ids:
            return out
        q = sa.select(deployment_steps).where(
            deployment_steps.c.deployment_id.in_(deployment_ids)).order_by(deployment_steps.c.id)
        with self.read() as conn:
            for r in conn.execute(q):
                out[r.deployment_id].append(_to(DeploymentStep, r))
        return out


def steps_summary(steps: list[DeploymentStep]) -> list[dict[str, Any]]:
    """The steps as plain data for views (history, status, lineage, the web view)."""
    return [{"kind": s.kind, "weight": s.weight, "status": s.status, "actor": s.actor,
             "summary": (s.details or {}).get("summary"), "started_at": s.started_at,
             "ended_at": s.ended_at} for s in steps]
