"""Release mechanics: deploy, promote, roll back and take down model versions.

* :func:`deploy` puts a blessed version's infra-validated image into an environment and waits
  until it serves. If it does not, the target puts the version that served before back, the
  new version is marked bad (no automatic deploy picks it again) and :class:`DeployFailed`
  (exit code 1) says so.
* :func:`promote` moves the version that runs healthy in the previous environment (the spec's
  order) into the next one, with the same image.
* :func:`rollback` redeploys the previous good version's image (or a named one) without
  rebuilding or retraining, and marks the version it replaces bad.
* :func:`down` takes an environment down on its target and records it.

Each of them asks the one policy (:mod:`cd4ml.release.policy`) first, and each references the
image by what identifies it (image ID, registry digest), never by its tag: an image gone from
the engine is pulled by digest from its recorded registry, or the action stops before anything
changed. After the target says the release serves, the servers are asked what they serve
(``/metadata``): another model than the one recorded fails the release, which is rolled back.

Every action is recorded (store.start_deployment/finish_deployment) and holds the store lock
``deploy:<pipeline>:<env>``, so two deploys to one environment run one after the other; the lock
of a killed action is taken over at once, and what it left is cleaned up first
(:mod:`cd4ml.release.leftovers`). An
action whose outcome is already in place (that version current and healthy) changes nothing
and says so. Events (:class:`~cd4ml.events.DeploymentStarted`, ``Deployed``,
``DeploymentFailed``, ``RolledBack``, ``DeployUnchanged``, ``TakenDown``) carry pipeline,
environment, version, image, digest, url, status, action, override and the store's deployment
id: the console and the GitHub reporter both listen to them.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cd4ml.errors import Cd4mlError, DeployError
from cd4ml.events import (
    Deployed,
    DeploymentFailed,
    DeploymentStarted,
    DeployUnchanged,
    RolledBack,
    StageFailed,
    StageFinished,
    StageStarted,
    TakenDown,
    emit,
)
from cd4ml.refs import ModelRef, find_model
from cd4ml.release import progressive
from cd4ml.release.leftovers import environment_lock
from cd4ml.release.policy import AUTO, ApproverCheck, Decision, Override, admit
from cd4ml.release.progressive import check_target
from cd4ml.states import DeployAction, DeploymentStatus, InfraStatus

if TYPE_CHECKING:
    from cd4ml.release.targets import Target
    from cd4ml.spec import EnvironmentSpec, Spec
    from cd4ml.store import Deployment, Image, ModelVersion, Store


@dataclass(frozen=True)
class DeployResult:
    """What a deploy, promotion, rollback or take-down did."""

    pipeline: str
    environment: str
    action: DeployAction
    status: DeploymentStatus  # healthy | unchanged | rolled_back | failed | down
    version: int
    image: str
    digest: str | None
    target: str
    url: str | None
    deployment_id: int | None
    previous_version: int | None
    seconds: float
    message: str
    details: dict = field(default_factory=dict)
    override: dict | None = None  # {by, reason, skipped} when the policy was overridden

    @property
    def ok(self) -> bool:
        return self.status in (DeploymentStatus.HEALTHY, DeploymentStatus.UNCHANGED,
                               DeploymentStatus.DOWN)


class DeployFailed(DeployError):
    """The release did not become healthy; ``result`` says what was put back."""

    def __init__(self, message: str, result: DeployResult):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Release:
    """The exact image a version goes out with: its tag for people, its ID and digest for
    the engine."""

    reference: str
    image_id: str | None
    digest: str | None


# ----------------------------------------------------------------------------- choosing


def deployable_image(store: Store, model: ModelVersion) -> Image:
    """The newest image of ``model`` that passed infra validation."""
    for img in store.images_for(model.id):  # newest first
        if img.infra_status == InfraStatus.PASSED:
            return img
    raise DeployError(f"{model.ref} has no infra-validated image; build it with "
                      f"'cd4ml build {model.version}'")


def _release_of(img: Image) -> Release:
    return Release(img.reference, img.image_id, img.digest)


def _recorded(dep: Deployment, store: Store) -> Release:
    """The image a deployment ran with; deployments recorded before image IDs were kept fall
    back to the version's validated image with the same reference."""
    d = dep.details or {}
    image_id = d.get("image_id")
    if image_id is None:
        same = [i for i in store.images_for(dep.model_version_id) if i.reference == dep.image_ref]
        image_id = same[0].image_id if same else None
    return Release(dep.image_ref, image_id, d.get("image_digest"))


def _choose(spec: Spec, store: Store, version: ModelRef | int | str | None) -> ModelVersion:
    if version is None:
        model = store.latest_model(spec.name, blessed=True)  # never one marked bad
        if model is None:
            raise DeployError(f"{spec.name} has no blessed version that is not marked bad; run "
                              "'cd4ml run', or name a version to deploy")
        return model
    model = find_model(store, version, spec)
    if not model.blessed:
        raise DeployError(f"{model.ref} is not blessed (its gate did not pass); only blessed "
                          "versions are deployed: fix the model, or override the gate with a reason")
    return model


def actor_name(actor: str | None = None) -> str:
    """Who acts: as given, else the CI's actor, else the login name."""
    if actor:
        return actor
    from cd4ml.integrations.git import git_info

    try:
        return git_info().actor or getpass.getuser()  # $GITHUB_ACTOR, git user.name, login
    except (KeyError, OSError):
        return "unknown"


# ----------------------------------------------------------------------------- actions


def deploy(spec: Spec, store: Store, environment: str, version: ModelRef | int | str | None = None, *,
           actor: str | None = None, reason: str | None = None, approved_by: str | None = None,
           override: Override | None = None, approver_check: ApproverCheck | None = AUTO,
           target: Target | None = None, previous_target: Target | None = None) -> DeployResult:
    """Deploy ``version`` (default: the newest blessed one not marked bad) to ``environment``,
    under the environment's policy (the same as a promotion's)."""
    env = spec.environment(environment)
    model = _choose(spec, store, version)
    release = _release_of(deployable_image(store, model))
    decision = admit(spec, store, env, model, action=DeployAction.DEPLOY, approved_by=approved_by,
                     override=override, approver_check=approver_check,
                     previous_target=previous_target)
    return _release(spec, store, env, model, release, decision, action=DeployAction.DEPLOY,
                    actor=actor, reason=reason, target=target, preflight=True, failed_is_bad=True)


def promote(spec: Spec, store: Store, version: ModelRef | int | str, to: str, *,
            approved_by: str | None = None, actor: str | None = None, reason: str | None = None,
            override: Override | None = None, approver_check: ApproverCheck | None = AUTO,
            target: Target | None = None, previous_target: Target | None = None) -> DeployResult:
    """Promote ``version`` to ``to`` with the image it runs with in the environment before;
    ``to``'s policy decides (order, approval, approver, not bad)."""
    env = spec.environment(to)
    prev = spec.previous_environment(to)
    if prev is None:
        raise DeployError(f"{to} is the first environment in {spec.path.name}; nothing is promoted "
                          f"into it: use 'cd4ml deploy --env {to}'")
    model = find_model(store, version, spec)
    if not model.blessed:
        raise DeployError(f"{model.ref} is not blessed; only blessed versions are promoted")
    decision = admit(spec, store, env, model, action=DeployAction.PROMOTE, approved_by=approved_by,
                     override=override, approver_check=approver_check,
                     previous_target=previous_target)
    running = store.current_deployment(spec.name, prev.name)
    release = (_recorded(running, store) if running and running.model_version_id == model.id
               else _release_of(deployable_image(store, model)))
    return _release(spec, store, env, model, release, decision, action=DeployAction.PROMOTE,
                    actor=actor,
                    reason=reason or f"promoted from {prev.name}", target=target,
                    preflight=True, failed_is_bad=True)


def rollback(spec: Spec, store: Store, environment: str, to: ModelRef | int | str | None = None, *,
             actor: str | None = None, reason: str | None = None,
             override: Override | None = None, target: Target | None = None) -> DeployResult:
    """Put the previous good version back in ``environment`` (or version ``to``), with the image
    it ran with; the version it replaces is marked bad."""
    env = spec.environment(environment)
    running = _running_rollout(store, spec, env)
    if running is not None and to is None:
        stopped = _stop_rollout(spec, store, env, running, actor=actor, override=override)
        if stopped is not None:
            return stopped
    current = store.current_deployment(spec.name, env.name)
    if to is not None:
        model = find_model(store, to, spec)
        earlier = _earlier_deployment(store, spec, env, model.id)
        release = (_recorded(earlier, store) if earlier
                   else _release_of(deployable_image(store, model)))
    else:
        if current is None:
            raise DeployError(f"nothing is deployed in {env.name}; there is nothing to roll back")
        earlier = _previous_good(store, spec, env, current)
        if earlier is None:
            raise DeployError(f"{env.name} has no earlier good version to roll back to; name one "
                              "with --to VERSION")
        model = store.model_by_id(earlier.model_version_id)
        release = _recorded(earlier, store)
    decision = admit(spec, store, env, model, action=DeployAction.ROLLBACK, override=override)
    result = _release(spec, store, env, model, release, decision, action=DeployAction.ROLLBACK,
                      actor=actor,
                      reason=reason, target=target, preflight=False, failed_is_bad=False)
    if result.status == DeploymentStatus.HEALTHY and current is not None and current.model_version_id != model.id:
        bad = store.set_model_flags(current.model_version_id, bad=True)
        emit(RolledBack(stage=DeployAction.ROLLBACK,
                        message=f"{bad.ref} rolled back to {model.ref} in {env.name}; "
                                f"{bad.ref} is marked bad",
                        **_event_data(result), rolled_back_version=bad.version))
    return result


def down(spec: Spec, store: Store, environment: str, *, actor: str | None = None,
         reason: str | None = None, target: Target | None = None) -> DeployResult:
    """Take ``environment`` down on its target (everything cd4ml made there for this project
    and pipeline) and record it: afterwards nothing is deployed there."""
    from cd4ml.release.targets import get_target

    env = spec.environment(environment)
    target = target or get_target(env)
    who = actor_name(actor)
    started = time.perf_counter()
    with environment_lock(store, spec, env, who, target, DeployAction.DOWN):
        current = store.current_deployment(spec.name, env.name)
        target.teardown(spec, env)
        if current is None:
            msg = f"nothing was deployed in {env.name}; removed whatever cd4ml had left there"
            return DeployResult(spec.name, env.name, DeployAction.DOWN, DeploymentStatus.DOWN, 0, "", None, env.target, None,
                                None, None, time.perf_counter() - started, msg)
        model = store.model_by_id(current.model_version_id)
        dep = store.start_deployment(spec.name, env.name, model.id, current.image_ref, env.target,
                                     DeployAction.DOWN, who, reason,
                                     details={"previous_version": model.version})
        store.finish_deployment(dep.id, DeploymentStatus.DOWN)
        msg = f"{env.name} is down: {model.ref} no longer serves there"
        result = DeployResult(spec.name, env.name, DeployAction.DOWN, DeploymentStatus.DOWN,
                              model.version, current.image_ref,
                              None, env.target, None, dep.id, model.version,
                              time.perf_counter() - started, msg)
        emit(TakenDown(stage=DeployAction.DOWN, message=msg, **_event_data(result), actor=who))
        return result


def _running_rollout(store: Store, spec: Spec, env: EnvironmentSpec) -> Deployment | None:
    """The canary or shadow release running in ``env`` now, if one is."""
    latest = store.deployments(spec.name, env.name, limit=1)
    if latest and latest[0].status == DeploymentStatus.IN_PROGRESS \
            and (latest[0].details or {}).get("strategy") in ("canary", "shadow"):
        return latest[0]
    return None


def _stop_rollout(spec: Spec, store: Store, env: EnvironmentSpec, running: Deployment, *,
                  actor: str | None, override: Override | None) -> DeployResult | None:
    """Ask the process running a canary or shadow to send all traffic back to the stable
    version (the release reads the request between its checks, a few times a second) and wait
    until it has; None when the release finished first (a plain rollback then follows)."""
    from cd4ml.states import StepKind, StepStatus
    from cd4ml.store import now as store_now

    who = actor_name(actor)
    stable_version = (running.details or {}).get("previous_version")
    stable = find_model(store, stable_version, spec) if stable_version is not None else None
    if stable is not None:
        admit(spec, store, env, stable, action=DeployAction.ROLLBACK, override=override)
    started = time.perf_counter()
    store.record_step(running.id, StepKind.ABORT_REQUEST, 0, StepStatus.REQUESTED,
                      store_now(), actor=who, details={"summary": f"stop asked by {who} (cd4ml rollback)"})
    wait = env.health_timeout + 30
    while (dep := store.deployment(running.id)).status == DeploymentStatus.IN_PROGRESS:
        if time.perf_counter() - started > wait:
            raise DeployError(f"the {(running.details or {}).get('strategy')} release of deployment "
                              f"{running.id} in {env.name} did not stop within {wait:g} s of the "
                              "request; is the process running it alive? run 'cd4ml status' and "
                              "'cd4ml rollback' again")
        time.sleep(0.1)
    if dep.status == DeploymentStatus.HEALTHY:
        return None
    model = store.model_by_id(dep.model_version_id)
    details = dep.details or {}
    current = store.current_deployment(spec.name, env.name)
    restored = details.get("restored", False) and current is not None
    took = details.get("abort_seconds")
    msg = (f"the {details.get('strategy')} release of {model.ref} in {env.name} was stopped: "
           + (f"all traffic is on {stable.ref if stable else 'the stable version'}"
              + (f" ({took:.2f} s after the decision)" if isinstance(took, (int, float)) else "")
              if restored else "traffic could NOT be sent back to the stable version; run "
              "'cd4ml status' and 'cd4ml rollback' again")
           + f"; {model.ref} is marked bad")
    return DeployResult(spec.name, env.name, DeployAction.ROLLBACK,
                        DeploymentStatus.HEALTHY if restored else DeploymentStatus.FAILED,
                        stable.version if stable else model.version,
                        current.image_ref if current else dep.image_ref, None, env.target,
                        current.url if current else None, current.id if current else None,
                        model.version, time.perf_counter() - started, msg,
                        details={"stopped_deployment": dep.id, "abort_seconds": took,
                                 "steps": details.get("steps")})


def _previous_good(store: Store, spec: Spec, env: EnvironmentSpec,
                   current: Deployment) -> Deployment | None:
    for d in store.deployments(spec.name, env.name, limit=1000):  # newest first
        if d.status == DeploymentStatus.REPLACED and d.action != DeployAction.DOWN \
                and d.model_version_id != current.model_version_id \
                and not store.model_by_id(d.model_version_id).bad:
            return d
    return None


def _earlier_deployment(store: Store, spec: Spec, env: EnvironmentSpec,
                        model_id: int) -> Deployment | None:
    for d in store.deployments(spec.name, env.name, model_version_id=model_id, limit=100):
        if d.status in (DeploymentStatus.HEALTHY, DeploymentStatus.REPLACED) \
                and d.action != DeployAction.DOWN:
            return d
    return None


# ----------------------------------------------------------------------------- the release


def _release(spec: Spec, store: Store, env: EnvironmentSpec, model: ModelVersion,
             release: Release, decision: Decision, *, action: DeployAction, actor: str | None,
             reason: str | None, target: Target | None, preflight: bool,
             failed_is_bad: bool) -> DeployResult:
    from cd4ml.release.identity import mismatch
    from cd4ml.release.render import render
    from cd4ml.release.targets import NotHealthy, get_target

    target = target or get_target(env)
    who = actor_name(actor)
    started = time.perf_counter()
    image = release.reference
    recorded = decision.record()
    with environment_lock(store, spec, env, who, target, action):
        current = store.current_deployment(spec.name, env.name)
        prev_model = store.model_by_id(current.model_version_id) if current else None
        base: dict[str, Any] = {"pipeline": spec.name, "environment": env.name, "action": action,
                "version": model.version, "image": image, "digest": release.digest,
                "target": env.target, "previous_version": prev_model.version if prev_model else None,
                "override": recorded.get("override")}
        if current is not None and current.model_version_id == model.id and current.image_ref == image:
            health = target.health(spec, env)
            if health.ok and not mismatch(model, target.served(spec, env, env.replicas)):
                result = DeployResult(**base, status=DeploymentStatus.UNCHANGED, url=current.url,
                                      deployment_id=current.id, seconds=time.perf_counter() - started,
                                      message=f"{model.ref} already serves in {env.name} and is "
                                              "healthy; nothing to do")
                emit(DeployUnchanged(stage=action, message=result.message, **_event_data(result)))
                return result
        # before anything changes: the exact image is here (or pulled by digest), else stop
        target.ensure_image(image, release.image_id, release.digest)
        stepwise = (env.rollout.progressive and action != DeployAction.ROLLBACK
                    and prev_model is not None and prev_model.id != model.id)
        if stepwise:
            check_target(env, target)
        emit(StageStarted(action, f"{action} {model.ref} to {env.name}"))
        previous = _recorded(current, store) if current is not None else None
        dep = store.start_deployment(spec.name, env.name, model.id, image, env.target, action, who,
                                     reason, details={**({"strategy": str(env.rollout.strategy)}
                                                         if stepwise else {}),
                                                      "image_digest": release.digest,
                                                      "image_id": release.image_id,
                                                      "previous_version": base["previous_version"],
                                                      **recorded})
        # the commit the model was trained from is what is deployed (a rollback's is an old
        # one), not the commit of the workflow that happens to deploy it
        emit(DeploymentStarted(stage=action, message=f"{action} {model.ref} to {env.name} "
                                                     f"({env.target})" + _override_note(recorded),
                               **base, deployment_id=dep.id, actor=who, url=None,
                               status=DeploymentStatus.IN_PROGRESS,
                               git_commit=store.run(model.run_id).git_commit))
        try:
            proxy_image = target.proxy_image(spec, env, image)
            rendered = render(spec, env, model, image, digest=release.digest,
                              proxy_image=proxy_image, image_id=release.image_id)
            before = (render(spec, env, prev_model, previous.reference, digest=previous.digest,
                             proxy_image=proxy_image, image_id=previous.image_id)
                      if previous is not None and prev_model is not None else None)
            if stepwise and before is not None and prev_model is not None:
                applied = progressive.run(progressive.Rollout(
                    spec, store, env, prev_model, model, before, rendered, dep.id, target,
                    {**base, "stage": action, "status": DeploymentStatus.IN_PROGRESS,
                     "deployment_id": dep.id, "url": None, "actor": who}))
            else:
                applied = target.apply(rendered, timeout=env.health_timeout, previous=before,
                                       preflight=preflight)
            wrong = mismatch(model, target.served(spec, env, env.replicas))
            if wrong:
                restored = False
                if before is not None:
                    try:
                        target.apply(before, timeout=max(60.0, env.health_timeout), preflight=False)
                        restored = True
                    except Cd4mlError:
                        restored = False
                raise NotHealthy(f"the servers do not serve the recorded model: {wrong}",
                                 restored=restored, details={"identity": wrong})
        except NotHealthy as e:
            status = DeploymentStatus.ROLLED_BACK if e.restored else DeploymentStatus.FAILED
            store.finish_deployment(dep.id, status, details={"error": str(e), "restored": e.restored,
                                                               **_small(e.details)})
            if failed_is_bad:
                store.set_model_flags(model.id, bad=True)
            back = (f"{prev_model.ref} still serves" if e.restored and prev_model
                    else "nothing serves there")
            why = ("was stopped by its analysis" if isinstance(e, progressive.AnalysisFailed)
                   else "did not become healthy")
            msg = (f"{model.ref} {why} in {env.name}: {e}; {back}"
                   + (f"; {model.ref} is marked bad (deploy it by name to retry)" if failed_is_bad else ""))
            result = DeployResult(**base, status=status, url=current.url if current else None,
                                  deployment_id=dep.id, seconds=time.perf_counter() - started,
                                  message=msg, details=_small(e.details))
            emit(DeploymentFailed(stage=action, message=msg, **_event_data(result)))
            emit(StageFailed(action, msg))
            if e.restored and prev_model is not None:
                emit(RolledBack(stage=action, message=f"{env.name} rolled back to {prev_model.ref}",
                                **{**_event_data(result), "version": prev_model.version,
                                   "image": current.image_ref if current else None},
                                rolled_back_version=model.version, automatic=True))
            raise DeployFailed(msg, result) from None
        except BaseException as e:
            text = str(e) if isinstance(e, Cd4mlError) else f"{type(e).__name__}: {e}"
            store.finish_deployment(dep.id, DeploymentStatus.FAILED, details={"error": text})
            emit(DeploymentFailed(stage=action, message=text, **base, deployment_id=dep.id,
                                  url=None, status=DeploymentStatus.FAILED, actor=who))
            emit(StageFailed(action, text))
            raise
        done = store.finish_deployment(dep.id, DeploymentStatus.HEALTHY, url=applied.url,
                                       details=_small(applied.details))
        seconds = time.perf_counter() - started
        result = DeployResult(**base, status=DeploymentStatus.HEALTHY, url=applied.url,
                              deployment_id=done.id,
                              seconds=seconds, details=_small(applied.details),
                              message=f"{model.ref} serves in {env.name} at {applied.url} "
                                      f"({seconds:.1f} s)" + _override_note(recorded))
        emit(Deployed(stage=action, message=result.message, **_event_data(result), actor=who))
        emit(StageFinished(action, result.message))
        return result


def _override_note(recorded: dict[str, Any]) -> str:
    o = recorded.get("override")
    return f"; OVERRIDDEN by {o['by']}: {o['reason']}" if o else ""


def _event_data(r: DeployResult) -> dict[str, Any]:
    return {"pipeline": r.pipeline, "environment": r.environment, "action": r.action,
            "version": r.version, "image": r.image, "digest": r.digest, "target": r.target,
            "url": r.url, "status": r.status, "deployment_id": r.deployment_id,
            "previous_version": r.previous_version, "override": r.override}


def _small(details: dict) -> dict:
    """Details fit for the store: long texts (container logs) cut to their tail."""
    return {k: (v[-2000:] if isinstance(v, str) else v) for k, v in details.items()}
