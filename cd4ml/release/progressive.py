"""Progressive delivery: a canary or shadow release run step by step and judged by analysis.

:func:`run` is what :func:`cd4ml.release.deploy._release` calls instead of ``target.apply``
when the environment's strategy is ``canary`` or ``shadow`` and another version serves there.
Each step asks the target to split traffic (``target.split``: the candidate's servers start
beside the stable ones and take ``weight`` percent of live requests, or a mirrored copy of them
under a shadow), holds it for the step's interval, then judges the candidate against the stable
version over exactly that window (:mod:`cd4ml.release.analysis`). A passed step goes on; the last
one moves all traffic to the candidate (``target.unsplit``). A failed analysis, an abort asked by
``cd4ml rollback`` (an ``abort_request`` row in the store) or any error sends all traffic back to
the stable version at once and raises :class:`AnalysisFailed` (a ``NotHealthy`` whose previous
version is restored), which the caller records like any failed release: the deployment
``rolled_back``, the candidate marked bad, exit code 1.

Every step is recorded (store ``deployment_steps``) with its analysis, reported as a
:class:`~cd4ml.events.DeploymentStepped` event (the GitHub deployment's statuses) and a progress
line, and the time from the decision to abort to all traffic on stable is measured and kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cd4ml.errors import DeployError
from cd4ml.events import DeploymentStepped, StageProgress, emit
from cd4ml.release.analysis import Analysis, Observation, analyse, read_logs, scrape
from cd4ml.release.strategy import Strategy
from cd4ml.release.targets import Applied, NotHealthy
from cd4ml.states import StepKind, StepStatus
from cd4ml.watch.window import Window, stamp

if TYPE_CHECKING:
    from cd4ml.release.render import Rendered
    from cd4ml.spec import EnvironmentSpec, Spec
    from cd4ml.store import ModelVersion, Store

log = logging.getLogger(__name__)
#: how often a running step looks for an abort request and counts the candidate's rows
POLL_SECONDS = 0.25


class Splitter(Protocol):
    """What a target offers for progressive releases (local and swarm through their front,
    kubernetes by replica ratio)."""

    def split(self, stable: Rendered, candidate: Rendered, *, weight: int, shadow: bool = False,
              timeout: float) -> Applied: ...

    def unsplit(self, keep: Rendered, drop: Rendered, *, timeout: float) -> Applied: ...


class AnalysisFailed(NotHealthy):
    """The candidate was stopped (a failed analysis, an abort); all traffic is on stable."""


@dataclass(frozen=True)
class Rollout:
    """Everything one progressive release needs."""

    spec: Spec
    store: Store
    env: EnvironmentSpec
    stable_model: ModelVersion
    candidate_model: ModelVersion
    stable: Rendered
    candidate: Rendered
    deployment_id: int
    target: Any  # a Target that is a Splitter
    event: dict[str, Any] = field(default_factory=dict)  # the DeploymentEvent fields


@dataclass(frozen=True)
class StepResult:
    """One step as it ended."""

    kind: StepKind
    weight: int
    status: StepStatus
    analysis: Analysis | None
    seconds: float
    summary: str


def can_split(target: Any) -> bool:
    return callable(getattr(target, "split", None)) and callable(getattr(target, "unsplit", None))


def check_target(env: EnvironmentSpec, target: Any) -> None:
    """Refuse, before anything changes, a target that cannot split traffic."""
    if not can_split(target):
        raise DeployError(f"environments.{env.name}.strategy is {env.rollout.strategy}, but the "
                          f"{env.target} target here cannot split traffic between two versions; "
                          "set strategy: blue_green or use a cd4ml whose target supports it")


def run(r: Rollout) -> Applied:
    """Run every step; Applied once all traffic is on the candidate, else AnalysisFailed."""
    rs = r.env.rollout
    steps = ([(StepKind.SHADOW, 0)] if rs.strategy == Strategy.SHADOW
             else [(StepKind.CANARY, w) for w in rs.steps if w < 100])
    done: list[StepResult] = []
    try:
        for number, (kind, weight) in enumerate(steps, start=1):
            step = _step(r, kind, weight, number, len(steps))
            done.append(step)
            if step.status != StepStatus.PASSED:
                _abort(r, step, done)
    except AnalysisFailed:
        raise
    except BaseException:
        # an error or an interrupt mid-step: clients must not stay on an unjudged version
        try:
            r.target.unsplit(r.stable, r.candidate, timeout=r.env.health_timeout)
        except Exception as e:  # noqa: BLE001 - the first error is the one to report
            log.warning("could not send all traffic back to %s after an error: %s",
                        r.stable_model.ref, e)
        raise
    applied = r.target.unsplit(r.candidate, r.stable, timeout=r.env.health_timeout)
    return Applied(applied.url, {**applied.details, **_summary(r, done)})


def _step(r: Rollout, kind: StepKind, weight: int, number: int, of: int) -> StepResult:
    rs = r.env.rollout
    started_at = _now()
    began = time.monotonic()
    # recorded before the split, so that status, history and lineage show the step under way
    name = _name(kind, weight, number, of)
    at = _Step(r.store.record_step(
        r.deployment_id, kind, weight, StepStatus.RUNNING, started_at,
        details={"name": name, "summary": f"{name}: under way since {started_at[11:19]} UTC"},
    ).id, kind, weight, number, of)
    try:
        applied = r.target.split(r.stable, r.candidate, weight=weight,
                                 shadow=kind == StepKind.SHADOW, timeout=r.env.health_timeout)
    except NotHealthy as e:
        # the candidate never served: nothing to analyse, the stable version still serves all
        return _finish(r, at, StepStatus.ABORTED, None, began,
                       f"the candidate did not start: {e}", {"error": str(e)})
    # servers this machine cannot reach (a Swarm's, a cluster's) have no address here: their
    # service checks are inconclusive, the prediction logs still judge the model
    upstreams = {side: url for side, url in (applied.details.get("upstreams") or {}).items() if url}
    effective = int(applied.details.get("weight", weight))
    # the step is held, and judged, from when the split serves (starting servers is not in it)
    serving = time.monotonic()
    window_start = stamp(datetime.now(UTC))
    before = {side: scrape(url) for side, url in upstreams.items()}
    hold = rs.shadow_duration if kind == StepKind.SHADOW else rs.interval
    # a shadow may end on a number of mirrored requests before its duration
    by_count = rs.shadow_requests if kind == StepKind.SHADOW else None
    least = rs.analysis.min_requests
    asked = None
    while True:
        asked = r.store.abort_request(r.deployment_id)
        if asked is not None:
            break
        waited = time.monotonic() - serving
        if waited >= rs.max_wait:
            break
        if waited >= hold or by_count:
            rows = _observe(r, window_start, upstreams, before, counts=False)[1].rows
            if (by_count and rows >= by_count) or (waited >= hold and rows >= least):
                break
        time.sleep(POLL_SECONDS)
    if asked is not None:
        who = asked.actor or "someone"
        return _finish(r, at, StepStatus.ABORTED, None, began, f"stopped by {who} (cd4ml rollback)",
                       {"requested_by": who, "effective_weight": effective})
    stable, candidate = _observe(r, window_start, upstreams, before, counts=True)
    analysis = analyse(r.candidate_model.task, stable, candidate, rs.analysis,
                       mirrored=kind == StepKind.SHADOW, window=(window_start, _now()))
    status = StepStatus.PASSED if analysis.passed else StepStatus.FAILED
    return _finish(r, at, status, analysis, began, analysis.summary(),
                   {"effective_weight": effective, "upstreams": upstreams})


def _observe(r: Rollout, start: str, upstreams: dict[str, str], before: dict[str, Any], *,
             counts: bool) -> tuple[Observation, Observation]:
    paths = _log_paths(r)
    window = Window(start, stamp(datetime.now(UTC)))
    s, c = r.stable_model.version, r.candidate_model.version
    logs = read_logs(paths, r.spec.name, window, (s, c))
    now = {side: scrape(url) for side, url in upstreams.items()} if counts else {}

    def obs(side: str, version: int) -> Observation:
        after = now.get(side)
        return Observation(version, logs[version],
                           after.since(before.get(side)) if after is not None else None)

    return obs("stable", s), obs("candidate", c)


def _log_paths(r: Rollout) -> list[str]:
    """The environment's prediction logs: the target's when it fetches them (a cluster's),
    else the host folder every local and Swarm server of the environment writes to."""
    fetch = getattr(r.target, "prediction_logs", None)
    if callable(fetch):
        return list(fetch(r.spec, r.env))
    from cd4ml.paths import prediction_log_dir

    directory = Path(prediction_log_dir(r.spec.project, r.spec.name, r.env.name))
    return [str(p) for p in sorted(directory.glob("*.jsonl"))]


@dataclass(frozen=True)
class _Step:
    """The step being run: its row in the store and its place in the release."""

    id: int
    kind: StepKind
    weight: int
    number: int
    of: int


def _name(kind: StepKind, weight: int, number: int, of: int) -> str:
    return f"step {number}/{of} " + ("shadow" if kind == StepKind.SHADOW else f"canary {weight}%")


def _finish(r: Rollout, at: _Step, status: StepStatus, analysis: Analysis | None, began: float,
            summary: str, details: dict[str, Any]) -> StepResult:
    seconds = time.monotonic() - began
    line = f"{_name(at.kind, at.weight, at.number, at.of)}: {summary}"
    r.store.finish_step(at.id, status, analysis=analysis.as_dict() if analysis else None,
                        details={**details, "summary": line, "seconds": round(seconds, 3)})
    emit(StageProgress(str(r.event.get("action") or "deploy"), line))
    emit(DeploymentStepped(**r.event, message=line, step=at.number, steps=at.of, kind=at.kind,
                           weight=at.weight, step_status=status))
    return StepResult(at.kind, at.weight, status, analysis, seconds, line)


def _abort(r: Rollout, step: StepResult, done: list[StepResult]) -> None:
    """All traffic back on stable at once, the time it took measured, then AnalysisFailed."""
    decided = time.perf_counter()
    restored = True
    try:
        back = r.target.unsplit(r.stable, r.candidate, timeout=r.env.health_timeout)
        switch = back.details.get("switch_seconds")
    except DeployError as e:
        restored, switch = False, None
        step = StepResult(step.kind, step.weight, step.status, step.analysis, step.seconds,
                          f"{step.summary}; traffic could not be sent back to stable: {e}")
    total = time.perf_counter() - decided
    # the target times its switch from its call until every new request goes to stable; what
    # follows (draining and removing the candidate's servers) is no client's wait for stable.
    # Nothing runs between the decision and the call, so the switch is the decision's delay.
    seconds = total if not isinstance(switch, (int, float)) else min(total, float(switch))
    line = (f"abort: all traffic on {r.stable_model.ref} {seconds:.2f} s after the decision"
            if restored else "abort: traffic could NOT be sent back to the stable version")
    emit(StageProgress(str(r.event.get("action") or "deploy"), line))
    details = {**_summary(r, done), "abort_seconds": round(seconds, 3),
               "switch_seconds": switch, "abort_total_seconds": round(total, 3), "abort": line}
    if step.analysis is not None:
        details["analysis"] = step.analysis.as_dict()
    raise AnalysisFailed(f"{step.summary} ({line})", restored=restored, details=details)


def _summary(r: Rollout, done: list[StepResult]) -> dict[str, Any]:
    return {"strategy": str(r.env.rollout.strategy), "stable_version": r.stable_model.version,
            "steps": [{"kind": str(s.kind), "weight": s.weight, "status": str(s.status),
                       "seconds": round(s.seconds, 3), "summary": s.summary} for s in done]}


def _now() -> str:
    from cd4ml.store import now

    return now()
