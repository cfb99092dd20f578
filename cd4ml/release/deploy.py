"""Deploy, promote and roll back model versions; what runs where, and what happened.

* :func:`deploy` puts a blessed version's infra-validated image into an environment and waits
  until it serves. If it does not, the target puts the version that served before back, the
  new version is marked bad (no automatic deploy picks it again until someone names it) and
  :class:`DeployFailed` (exit code 1) says so.
* :func:`promote` moves the version that runs healthy in the previous environment (the spec's
  order) into the next one, with the same image, once someone approved it.
* :func:`rollback` redeploys the previous good version's image (or a named one) without
  rebuilding or retraining, and marks the version it replaces bad.
* :func:`status` and :func:`history` read the store (and probe health live).

Every action is recorded (store.start_deployment/finish_deployment) and holds the store lock
``deploy:<pipeline>:<env>``, so two deploys to one environment run one after the other. An
action whose outcome is already in place (that version current and healthy) changes nothing
and says so. Events (:class:`~cd4ml.events.DeploymentStarted`, ``Deployed``,
``DeploymentFailed``, ``RolledBack``, ``DeployUnchanged``) carry pipeline, environment, version,
image, digest, url, status, action and the store's deployment id: the console and the GitHub
reporter both listen to them.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cd4ml.errors import Cd4mlError, DeployError
from cd4ml.events import (
    Deployed,
    DeploymentFailed,
    DeploymentStarted,
    DeployUnchanged,
    Event,
    RolledBack,
    StageFailed,
    StageFinished,
    StageStarted,
    StageWarning,
    emit,
)
from cd4ml.refs import ModelRef, find_model
from cd4ml.states import (
    ApprovalSource,
    DeployAction,
    DeploymentStatus,
    GitHubDeploymentState,
    InfraStatus,
)

if TYPE_CHECKING:
    from cd4ml.integrations.github import GitHubReporter
    from cd4ml.release.targets import Target
    from cd4ml.spec import EnvironmentSpec, Spec
    from cd4ml.store import Deployment, Image, ModelVersion, Store

#: (approver, model version, environment) -> (allowed, why); raise TrackerError when unsure
ApproverCheck = Callable[[str, "ModelVersion", "EnvironmentSpec"], "tuple[bool, str]"]
_AUTO: Any = object()


@dataclass(frozen=True)
class DeployResult:
    """What a deploy, promotion or rollback did."""

    pipeline: str
    environment: str
    action: DeployAction
    status: DeploymentStatus  # healthy | unchanged | rolled_back | failed
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

    @property
    def ok(self) -> bool:
        return self.status in (DeploymentStatus.HEALTHY, DeploymentStatus.UNCHANGED)


class DeployFailed(DeployError):
    """The release did not become healthy; ``result`` says what was put back."""

    def __init__(self, message: str, result: DeployResult):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class EnvironmentStatus:
    """What runs in one environment, and whether it answers now."""

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


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded deploy, promotion or rollback."""

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


# ----------------------------------------------------------------------------- choosing


def deployable_image(store: Store, model: ModelVersion) -> Image:
    """The newest image of ``model`` that passed infra validation."""
    for img in store.images_for(model.id):  # newest first
        if img.infra_status == InfraStatus.PASSED:
            return img
    raise DeployError(f"{model.ref} has no infra-validated image; build it with "
                      f"'cd4ml build {model.version}'")


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
    if model.bad:
        emit(StageWarning("deploy", f"{model.ref} is marked bad; deploying it because it was named"))
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
           actor: str | None = None, reason: str | None = None,
           target: Target | None = None) -> DeployResult:
    """Deploy ``version`` (default: the newest blessed one not marked bad) to ``environment``."""
    env = spec.environment(environment)
    model = _choose(spec, store, version)
    image = deployable_image(store, model)
    return _release(spec, store, env, model, image.reference, image.digest, action=DeployAction.DEPLOY,
                    actor=actor, reason=reason, target=target, preflight=True, failed_is_bad=True)


def promote(spec: Spec, store: Store, version: ModelRef | int | str, to: str, *,
            approved_by: str | None = None, actor: str | None = None, reason: str | None = None,
            approver_check: ApproverCheck | None = _AUTO, target: Target | None = None,
            previous_target: Target | None = None) -> DeployResult:
    """Promote ``version`` to ``to``: it must run healthy in the environment before ``to`` and,
    where ``to`` requires it, be approved (recorded before, or ``approved_by`` now).

    ``approver_check`` decides whether ``approved_by`` may approve; by default GitHub's (write
    permission, and not the commit's author where the environment says so) when GITHUB_TOKEN
    is set, else none: the name is recorded as given.
    """
    from cd4ml.release.targets import get_target

    env = spec.environment(to)
    prev = spec.previous_environment(to)
    if prev is None:
        raise DeployError(f"{to} is the first environment in {spec.path.name}; nothing is promoted "
                          f"into it: use 'cd4ml deploy --env {to}'")
    model = find_model(store, version, spec)
    if not model.blessed:
        raise DeployError(f"{model.ref} is not blessed; only blessed versions are promoted")
    running = store.current_deployment(spec.name, prev.name)
    if running is None or running.model_version_id != model.id:
        what = f"{spec.name}:{store.model_by_id(running.model_version_id).version}" if running else "nothing"
        raise DeployError(f"{model.ref} is not running in {prev.name} ({what} is); deploy it there "
                          f"first: cd4ml deploy --env {prev.name} {model.version}")
    health = (previous_target or get_target(prev)).health(spec, prev)
    if not health.ok:
        raise DeployError(f"{model.ref} is not healthy in {prev.name} ({health.detail}); fix or "
                          f"redeploy it there before promoting it to {to}")
    if approved_by:
        check = github_approver_check(store) if approver_check is _AUTO else approver_check
        why = "recorded as given (no approver check configured)"
        if check is not None:
            allowed, why = check(approved_by, model, env)
            if not allowed:
                raise DeployError(f"{approved_by} may not approve {model.ref} for {to}: {why}")
        store.record_approval(model.id, env.name, approved_by, ApprovalSource.CLI, details={"check": why})
    if env.requires_approval and not approved_by and not store.approvals(model.id, env.name):
        _record_review_approvals(store, model, env, approver_check)
    if env.requires_approval and not store.approvals(model.id, env.name):
        raise DeployError(f"{to} requires an approval of {model.ref}: pass --approved-by USER, or "
                          f"approve the '{to}' environment review on GitHub")
    return _release(spec, store, env, model, running.image_ref, running.details.get("image_digest"),
                    action=DeployAction.PROMOTE, actor=actor, reason=reason or f"promoted from {prev.name}",
                    target=target, preflight=True, failed_is_bad=True)


def rollback(spec: Spec, store: Store, environment: str, to: ModelRef | int | str | None = None, *,
             actor: str | None = None, reason: str | None = None,
             target: Target | None = None) -> DeployResult:
    """Put the previous good version back in ``environment`` (or version ``to``), with the image
    it ran with; the version it replaces is marked bad."""
    env = spec.environment(environment)
    current = store.current_deployment(spec.name, env.name)
    if to is not None:
        model = find_model(store, to, spec)
        earlier = _earlier_deployment(store, spec, env, model.id)
        image_ref, digest = ((earlier.image_ref, earlier.details.get("image_digest")) if earlier
                             else _image_ref(deployable_image(store, model)))
    else:
        if current is None:
            raise DeployError(f"nothing is deployed in {env.name}; there is nothing to roll back")
        earlier = _previous_good(store, spec, env, current)
        if earlier is None:
            raise DeployError(f"{env.name} has no earlier good version to roll back to; name one "
                              "with --to VERSION")
        model = store.model_by_id(earlier.model_version_id)
        image_ref, digest = earlier.image_ref, earlier.details.get("image_digest")
    result = _release(spec, store, env, model, image_ref, digest, action=DeployAction.ROLLBACK, actor=actor,
                      reason=reason, target=target, preflight=False, failed_is_bad=False)
    if result.status == DeploymentStatus.HEALTHY and current is not None and current.model_version_id != model.id:
        bad = store.set_model_flags(current.model_version_id, bad=True)
        emit(RolledBack(stage=DeployAction.ROLLBACK,
                        message=f"{bad.ref} rolled back to {model.ref} in {env.name}; "
                                f"{bad.ref} is marked bad",
                        **_event_data(result), rolled_back_version=bad.version))
    return result


def _previous_good(store: Store, spec: Spec, env: EnvironmentSpec,
                   current: Deployment) -> Deployment | None:
    for d in store.deployments(spec.name, env.name, limit=1000):  # newest first
        if d.status == DeploymentStatus.REPLACED and d.model_version_id != current.model_version_id \
                and not store.model_by_id(d.model_version_id).bad:
            return d
    return None


def _earlier_deployment(store: Store, spec: Spec, env: EnvironmentSpec,
                        model_id: int) -> Deployment | None:
    for d in store.deployments(spec.name, env.name, model_version_id=model_id, limit=100):
        if d.status in (DeploymentStatus.HEALTHY, DeploymentStatus.REPLACED):
            return d
    return None


def _image_ref(img: Image) -> tuple[str, str | None]:
    return img.reference, img.digest


# ----------------------------------------------------------------------------- the release


def _release(spec: Spec, store: Store, env: EnvironmentSpec, model: ModelVersion, image: str,
             digest: str | None, *, action: DeployAction, actor: str | None, reason: str | None,
             target: Target | None, preflight: bool, failed_is_bad: bool) -> DeployResult:
    from cd4ml.release.render import render
    from cd4ml.release.targets import NotHealthy, get_target

    target = target or get_target(env)
    who = actor_name(actor)
    started = time.perf_counter()
    holder = f"{socket.gethostname()}:{os.getpid()}:{who}"
    with store.lock(f"deploy:{spec.name}:{env.name}", holder):
        current = store.current_deployment(spec.name, env.name)
        prev_model = store.model_by_id(current.model_version_id) if current else None
        base: dict[str, Any] = {"pipeline": spec.name, "environment": env.name, "action": action,
                "version": model.version, "image": image, "digest": digest, "target": env.target,
                "previous_version": prev_model.version if prev_model else None}
        if current is not None and current.model_version_id == model.id and current.image_ref == image:
            health = target.health(spec, env)
            if health.ok:
                result = DeployResult(**base, status=DeploymentStatus.UNCHANGED, url=current.url,
                                      deployment_id=current.id, seconds=time.perf_counter() - started,
                                      message=f"{model.ref} already serves in {env.name} and is "
                                              "healthy; nothing to do")
                emit(DeployUnchanged(stage=action, message=result.message, **_event_data(result)))
                return result
        emit(StageStarted(action, f"{action} {model.ref} to {env.name}"))
        dep = store.start_deployment(spec.name, env.name, model.id, image, env.target, action, who,
                                     reason, details={"image_digest": digest,
                                                      "previous_version": base["previous_version"]})
        # the commit the model was trained from is what is deployed (a rollback's is an old
        # one), not the commit of the workflow that happens to deploy it
        emit(DeploymentStarted(stage=action, message=f"{action} {model.ref} to {env.name} ({env.target})",
                               **base, deployment_id=dep.id, actor=who, url=None,
                               status=DeploymentStatus.IN_PROGRESS,
                               git_commit=store.run(model.run_id).git_commit))
        try:
            proxy_image = target.proxy_image(spec, env, image)
            rendered = render(spec, env, model, image, digest=digest, proxy_image=proxy_image)
            previous = (render(spec, env, prev_model, current.image_ref,
                               digest=current.details.get("image_digest"), proxy_image=proxy_image)
                        if current is not None and prev_model is not None else None)
            applied = target.apply(rendered, timeout=env.health_timeout, previous=previous,
                                   preflight=preflight)
        except NotHealthy as e:
            status = DeploymentStatus.ROLLED_BACK if e.restored else DeploymentStatus.FAILED
            store.finish_deployment(dep.id, status, details={"error": str(e), "restored": e.restored,
                                                               **_small(e.details)})
            if failed_is_bad:
                store.set_model_flags(model.id, bad=True)
            back = (f"{prev_model.ref} still serves" if e.restored and prev_model
                    else "nothing serves there")
            msg = (f"{model.ref} did not become healthy in {env.name}: {e}; {back}"
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
            emit(DeploymentFailed(stage=action, message=text, **base, deployment_id=dep.id, url=None,
                                  status=DeploymentStatus.FAILED, actor=who))
            emit(StageFailed(action, text))
            raise
        done = store.finish_deployment(dep.id, DeploymentStatus.HEALTHY, url=applied.url,
                                       details=_small(applied.details))
        seconds = time.perf_counter() - started
        result = DeployResult(**base, status=DeploymentStatus.HEALTHY, url=applied.url, deployment_id=done.id,
                              seconds=seconds, details=_small(applied.details),
                              message=f"{model.ref} serves in {env.name} at {applied.url} "
                                      f"({seconds:.1f} s)")
        emit(Deployed(stage=action, message=result.message, **_event_data(result), actor=who))
        emit(StageFinished(action, result.message))
        return result


def _event_data(r: DeployResult) -> dict[str, Any]:
    return {"pipeline": r.pipeline, "environment": r.environment, "action": r.action,
            "version": r.version, "image": r.image, "digest": r.digest, "target": r.target,
            "url": r.url, "status": r.status, "deployment_id": r.deployment_id,
            "previous_version": r.previous_version}


def _small(details: dict) -> dict:
    """Details fit for the store: long texts (container logs) cut to their tail."""
    return {k: (v[-2000:] if isinstance(v, str) else v) for k, v in details.items()}


# ----------------------------------------------------------------------------- approvals


def github_approver_check(store: Store) -> ApproverCheck | None:
    """GitHub's approver rules when GITHUB_TOKEN is set (else None: names are taken as given):
    write permission on the repository and, where the environment says approver_not_author,
    not the author of the commit the version was trained from."""
    if not os.environ.get("GITHUB_TOKEN"):
        return None
    from cd4ml.integrations.github import GitHubReporter

    reporter = GitHubReporter()
    if not reporter.enabled:
        return None

    def check(user: str, model: ModelVersion, env: EnvironmentSpec) -> tuple[bool, str]:
        sha = store.run(model.run_id).git_commit or reporter.config.sha
        if not sha:
            return False, f"{model.ref} records no git commit to check the approver against"
        return reporter.approver_allowed(user, sha, forbid_author=env.approver_not_author)

    return check


def _record_review_approvals(store: Store, model: ModelVersion, env: EnvironmentSpec,
                             approver_check: ApproverCheck | None | object) -> None:
    """In a workflow whose job runs in ``env``'s GitHub environment, the people who approved
    its review are the approvers: each is checked like a named one and recorded (source github).
    Outside a workflow, or with no token, there is nothing to read."""
    if not (os.environ.get("GITHUB_TOKEN") and os.environ.get("GITHUB_RUN_ID")):
        return
    from cd4ml.integrations.github import GitHubReporter

    reporter = GitHubReporter()
    if not reporter.enabled:
        return
    check = github_approver_check(store) if approver_check is _AUTO else approver_check
    refused = []
    for review in reporter.run_approvals():
        if review.state != "approved" or env.name not in review.environments:
            continue
        allowed, why = check(review.user, model, env) if callable(check) else (True, "as given")
        if not allowed:
            refused.append(f"{review.user}: {why}")
            continue
        store.record_approval(model.id, env.name, review.user, ApprovalSource.GITHUB,
                              details={"check": why, "run_id": reporter.config.run_id,
                                       "comment": review.comment})
    if refused and not store.approvals(model.id, env.name):
        raise DeployError(f"the '{env.name}' review of this workflow run was approved only by "
                          f"people who may not approve {model.ref}: {'; '.join(refused)}")


def github_listener(reporter: GitHubReporter) -> Callable[[Event], None]:
    """An event listener that mirrors deployments as GitHub Deployments through ``reporter``:
    created in_progress when one starts, success or failure when it ends."""
    ids: dict[int | None, int | None] = {}

    def listen(e: Event) -> None:
        if isinstance(e, DeploymentStarted):
            ids[e.deployment_id] = reporter.deployment_started(
                e.environment, e.pipeline, e.version, e.image, e.digest,
                ref=e.git_commit, description=e.message)
        elif isinstance(e, Deployed | DeploymentFailed) and e.deployment_id in ids:
            state = (GitHubDeploymentState.SUCCESS if isinstance(e, Deployed)
                     else GitHubDeploymentState.FAILURE)
            reporter.deployment_finished(ids.pop(e.deployment_id), state, e.url,
                                         description=e.message[:140])

    return listen


# ----------------------------------------------------------------------------- reading


def status(spec: Spec, store: Store, environment: str | None = None,
           probe: bool = True) -> list[EnvironmentStatus]:
    """Every environment (or one): the version and image current there, since when, and its
    health probed live (``/health`` through the environment's front, or the cluster's view)."""
    from cd4ml.release.targets import get_target

    envs = [spec.environment(environment)] if environment else list(spec.environments)
    out = []
    for env in envs:
        dep = store.current_deployment(spec.name, env.name)
        if dep is None:
            out.append(EnvironmentStatus(env.name, env.target, None, None, None, None, None, None,
                                         None, None, "nothing deployed"))
            continue
        model = store.model_by_id(dep.model_version_id)
        healthy: bool | None = None
        detail = "not probed"
        if probe:
            try:
                h = get_target(env).health(spec, env)
                healthy, detail = h.ok, h.detail
            except Cd4mlError as e:
                healthy, detail = False, str(e)
        out.append(EnvironmentStatus(env.name, env.target, model.version, dep.image_ref,
                                     dep.ended_at or dep.started_at, dep.action, dep.actor, dep.id,
                                     dep.url, healthy, detail, model.bad))
    return out


def history(spec: Spec, store: Store, environment: str | None = None,
            limit: int = 100) -> list[HistoryEntry]:
    """Every recorded deploy, promotion and rollback, newest first."""
    if environment:
        spec.environment(environment)
    return deployment_history(store, spec.name, environment, limit)


def deployment_history(store: Store, pipeline: str, environment: str | None = None,
                       limit: int = 100) -> list[HistoryEntry]:
    """``history`` from the store alone (no spec at hand, as in the web view)."""
    versions: dict[int, int] = {}
    out = []
    for d in store.deployments(pipeline, environment, limit=limit):
        if d.model_version_id not in versions:
            versions[d.model_version_id] = store.model_by_id(d.model_version_id).version
        out.append(HistoryEntry(d.id, d.environment, d.action, versions[d.model_version_id],
                                d.image_ref, d.status, d.current, d.actor, d.reason, d.started_at,
                                d.ended_at, d.url, (d.details or {}).get("error")))
    return out
