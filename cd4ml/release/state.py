"""What runs where, and what happened: the environments' state as recorded and as probed live.

``status`` reads the current deployment of each environment, probes its health and asks its
servers what they serve (``/metadata``), comparing that with the store: an environment that
should serve and does not, or that serves another model than the one recorded, is not ``ok``
(``cd4ml status`` exits 1). ``history`` lists every deploy, promotion, rollback and take-down
with who acted, who approved, the policy's outcome and any override, and for a canary or shadow
release every step with its analysis' verdict; ``status`` shows a release under way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cd4ml.errors import Cd4mlError

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.states import DeployAction, DeploymentStatus
    from cd4ml.store import Store


@dataclass(frozen=True)
class EnvironmentStatus:
    """What runs in one environment, and whether it answers now with the recorded model."""

    environment: str
    target: str
    version: int | None
    image: str | None
    since: str | None
    action: DeployAction | None
    actor: str | None
    deployment_id: int | None
    url: str | None
    healthy: bool | None  # None: not probed, or nothing deployed
    health: str
    model_bad: bool = False
    identity: str | None = None  # why the servers' model is not the recorded one, or None
    override: dict | None = None  # the override that admitted the current deployment
    # a canary or shadow release under way here: {deployment_id, version, strategy, steps}
    rollout: dict | None = None

    @property
    def ok(self) -> bool:
        """Nothing wrong seen: nothing deployed, not probed, or healthy with the right model."""
        return self.healthy is not False and self.identity is None


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded deploy, promotion, rollback or take-down."""

    id: int
    environment: str
    action: DeployAction
    version: int
    image: str
    status: DeploymentStatus
    current: bool
    actor: str | None
    reason: str | None
    started_at: str
    ended_at: str | None
    url: str | None
    error: str | None
    approvers: tuple[str, ...] = ()  # "alice (cli)"
    policy: tuple[dict[str, Any], ...] = ()  # {rule, passed, detail}
    override: dict | None = None
    strategy: str | None = None  # canary | shadow: the release ran in steps ...
    steps: tuple[dict[str, Any], ...] = ()  # ... each with its verdict (store deployment_steps)
    abort_seconds: float | None = None  # from the decision to abort to all traffic on stable


def status(spec: Spec, store: Store, environment: str | None = None,
           probe: bool = True) -> list[EnvironmentStatus]:
    """Every environment (or one): the version and image current there, since when, its health
    probed live, and whether its servers serve the recorded model."""
    from cd4ml.release.identity import mismatch
    from cd4ml.release.targets import get_target

    envs = [spec.environment(environment)] if environment else list(spec.environments)
    out = []
    for env in envs:
        dep = store.current_deployment(spec.name, env.name)
        rollout = _rollout_under_way(store, spec.name, env.name)
        if dep is None:
            out.append(EnvironmentStatus(env.name, env.target, None, None, None, None, None, None,
                                         None, None, "nothing deployed", rollout=rollout))
            continue
        model = store.model_by_id(dep.model_version_id)
        healthy: bool | None = None
        detail = "not probed"
        wrong = None
        if probe:
            try:
                target = get_target(env)
                h = target.health(spec, env)
                healthy, detail = h.ok, h.detail
                if h.ok:
                    wrong = mismatch(model, target.served(spec, env, env.replicas))
            except Cd4mlError as e:
                healthy, detail = False, str(e)
        out.append(EnvironmentStatus(env.name, env.target, model.version, dep.image_ref,
                                     dep.ended_at or dep.started_at, dep.action, dep.actor, dep.id,
                                     dep.url, healthy, detail, model.bad, wrong,
                                     (dep.details or {}).get("override"), rollout))
    return out


def _rollout_under_way(store: Store, pipeline: str, environment: str) -> dict[str, Any] | None:
    from cd4ml.states import DeploymentStatus
    from cd4ml.store.steps import steps_summary

    latest = store.deployments(pipeline, environment, limit=1)
    if not latest or latest[0].status != DeploymentStatus.IN_PROGRESS:
        return None
    d = latest[0]
    strategy = (d.details or {}).get("strategy")
    if strategy is None:
        return None
    return {"deployment_id": d.id, "version": store.model_by_id(d.model_version_id).version,
            "strategy": strategy, "steps": steps_summary(store.deployment_steps(d.id))}


def history(spec: Spec, store: Store, environment: str | None = None,
            limit: int = 100) -> list[HistoryEntry]:
    """Every recorded deploy, promotion, rollback and take-down, newest first."""
    if environment:
        spec.environment(environment)
    return deployment_history(store, spec.name, environment, limit)


def deployment_history(store: Store, pipeline: str, environment: str | None = None,
                       limit: int = 100) -> list[HistoryEntry]:
    """``history`` from the store alone (no spec at hand, as in the web view)."""
    from cd4ml.store.steps import steps_summary

    versions: dict[int, int] = {}
    out = []
    found = store.deployments(pipeline, environment, limit=limit)
    steps = store.steps_of([d.id for d in found if (d.details or {}).get("strategy")])
    for d in found:
        if d.model_version_id not in versions:
            versions[d.model_version_id] = store.model_by_id(d.model_version_id).version
        details = d.details or {}
        out.append(HistoryEntry(
            d.id, d.environment, d.action, versions[d.model_version_id], d.image_ref, d.status,
            d.current, d.actor, d.reason, d.started_at, d.ended_at, d.url, details.get("error"),
            approvers_of(details), tuple(details.get("policy") or ()), details.get("override"),
            details.get("strategy"), tuple(steps_summary(steps.get(d.id, []))),
            details.get("abort_seconds")))
    return out


def approvers_of(details: dict[str, Any]) -> tuple[str, ...]:
    """``alice (cli)`` for each approval a deployment recorded."""
    return tuple(f"{a.get('approver')} ({a.get('source')})" for a in details.get("approvals") or ())
