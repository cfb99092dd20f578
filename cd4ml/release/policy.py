"""One release policy for every path into an environment, and who may approve.

Whatever puts a version into an environment — ``deploy``, ``promote``, ``rollback``, a workflow,
an automatic deploy after a build — asks :func:`admit` first. The rules of an environment:

    order      the version runs healthy in the environment before (the spec's order); a
               rollback to a version that already served healthy here counts as admitted
    approval   where ``requires_approval``: an approval recorded for this version and
               environment (``--approved-by`` now, or the workflow's environment review)
    approver   the approver may approve: write permission on GitHub when a token is set, and
               where ``approver_not_author``, not the author of the commit the version was
               trained from — checked against git locally when there is no token
    not bad    the version is not marked bad (a failed or rolled-back release)

A version that breaks a rule is refused with every broken rule named. The break-glass path is
an :class:`Override` (``--override --reason TEXT --by USER``): it admits the version anyway,
unless the environment says ``allow_override: false``, and the override is recorded with the
deployment and shown wherever the deployment is. Being blessed and having an infra-validated
image are not rules of an environment but of the version, and no override skips them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import DeployError
from cd4ml.states import ApprovalSource, DeployAction, DeploymentStatus

if TYPE_CHECKING:
    from cd4ml.release.targets import Target
    from cd4ml.spec import EnvironmentSpec, Spec
    from cd4ml.store import ModelVersion, Store

#: (approver, model version, environment) -> (allowed, why); raise TrackerError when unsure
ApproverCheck = Callable[[str, "ModelVersion", "EnvironmentSpec"], "tuple[bool, str]"]
#: the default approver check: GitHub's with a token, else git's (see :func:`approver_check`)
AUTO: Any = object()


@dataclass(frozen=True)
class Override:
    """A named person's decision to release past the policy, and why."""

    by: str
    reason: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise DeployError("an override needs a reason (--reason TEXT): it is recorded with "
                              "the deployment")
        if not self.by.strip():
            raise DeployError("an override needs a named person (--by USER): it is recorded with "
                              "the deployment")


@dataclass(frozen=True)
class Check:
    """One rule of the policy and how it came out."""

    rule: str  # order | approval | approver | not_bad
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    """Why a version may enter an environment: every rule checked, and the override that
    admitted it past the rules it broke (None when it broke none)."""

    environment: str
    version: int
    checks: tuple[Check, ...]
    override: Override | None = None
    approvals: tuple[dict[str, Any], ...] = field(default=())

    @property
    def broken(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def record(self) -> dict[str, Any]:
        """What the deployment row keeps (``details``): shown by status, history, show, lineage
        and the GitHub deployment."""
        out: dict[str, Any] = {"policy": [{"rule": c.rule, "passed": c.passed, "detail": c.detail}
                                          for c in self.checks],
                               "approvals": list(self.approvals)}
        if self.override is not None:
            out["override"] = {"by": self.override.by, "reason": self.override.reason,
                               "skipped": [f"{c.rule}: {c.detail}" for c in self.broken]}
        return out


def admit(spec: Spec, store: Store, env: EnvironmentSpec, model: ModelVersion, *, action: DeployAction,
          approved_by: str | None = None, override: Override | None = None,
          approver_check: ApproverCheck | None = AUTO,
          previous_target: Target | None = None) -> Decision:
    """Check ``model`` against ``env``'s policy; the Decision when it is admitted (by the rules
    or by ``override``), else raise DeployError naming every broken rule and the way out."""
    if override is not None and not env.allow_override:
        raise DeployError(f"environments.{env.name}.allow_override is false in {spec.path.name}: "
                          f"no override may put a version into {env.name}; meet its policy instead")
    checks: list[Check] = []
    served_here = action == DeployAction.ROLLBACK and _served_before(store, spec, env, model)
    checks.append(Check("not_bad", not model.bad,
                        f"{model.ref} is marked bad (a failed or rolled-back release)" if model.bad
                        else f"{model.ref} is not marked bad"))
    if served_here:
        checks.append(Check("order", True, f"{model.ref} served healthy in {env.name} before"))
    else:
        checks.append(_order(spec, store, env, model, previous_target))
    pending: tuple[str, str] | None = None
    if env.requires_approval and not served_here:
        if approved_by:
            allowed, why = _check_approver(spec, store, approved_by, model, env, approver_check)
            checks.append(Check("approver", allowed, why if allowed
                                else f"{approved_by} may not approve {model.ref} for {env.name}: {why}"))
            if allowed:
                pending = (approved_by, why)
        elif not store.approvals(model.id, env.name):
            refused = record_review_approvals(spec, store, model, env, approver_check)
            if refused:
                checks.append(Check("approver", False, refused))
        have = bool(pending or store.approvals(model.id, env.name))
        checks.append(Check("approval", have, "approved" if have else
                            f"{env.name} requires an approval of {model.ref}: pass --approved-by "
                            f"USER, or approve the '{env.name}' environment review on GitHub"))
    elif approved_by:
        # recorded for the record even where not required, checked the same way
        allowed, why = _check_approver(spec, store, approved_by, model, env, approver_check)
        checks.append(Check("approver", allowed, why))
        if allowed:
            pending = (approved_by, why)
    decision = Decision(env.name, model.version, tuple(checks))
    if decision.broken:
        if override is None:
            way_out = ("; or, as a recorded break-glass, --override --reason TEXT --by USER"
                       if env.allow_override else "")
            raise DeployError(f"{action} of {model.ref} to {env.name} refused: "
                              + "; ".join(c.detail for c in decision.broken) + way_out)
    else:
        override = None  # not needed: not recorded, as with a gate override
    if pending is not None:
        store.record_approval(model.id, env.name, pending[0], ApprovalSource.CLI, details={"check": pending[1]})
    approvals = tuple({"approver": a.approver, "source": a.source,
                       "check": (a.details or {}).get("check")}
                      for a in store.approvals(model.id, env.name))
    return Decision(env.name, model.version, tuple(checks), override, approvals)


def _served_before(store: Store, spec: Spec, env: EnvironmentSpec, model: ModelVersion) -> bool:
    return any(d.status in (DeploymentStatus.HEALTHY, DeploymentStatus.REPLACED)
               for d in store.deployments(spec.name, env.name, model_version_id=model.id, limit=100))


def _order(spec: Spec, store: Store, env: EnvironmentSpec, model: ModelVersion,
           previous_target: Target | None) -> Check:
    from cd4ml.release.targets import get_target

    prev = spec.previous_environment(env.name)
    if prev is None:
        return Check("order", True, f"{env.name} is the first environment")
    running = store.current_deployment(spec.name, prev.name)
    if running is None or running.model_version_id != model.id:
        what = (f"{spec.name}:{store.model_by_id(running.model_version_id).version}" if running
                else "nothing")
        return Check("order", False, f"{model.ref} is not running in {prev.name} ({what} is); "
                                     f"deploy it there first: cd4ml deploy --env {prev.name} "
                                     f"{model.version}")
    health = (previous_target or get_target(prev)).health(spec, prev)
    if not health.ok:
        return Check("order", False, f"{model.ref} is not healthy in {prev.name} "
                                     f"({health.detail}); fix or redeploy it there first")
    return Check("order", True, f"{model.ref} runs healthy in {prev.name}")


# ----------------------------------------------------------------------------- approvers


def approver_check(spec: Spec, store: Store) -> ApproverCheck:
    """GitHub's approver rules when GITHUB_TOKEN is set (write permission, and not the commit's
    author where the environment says approver_not_author); without a token, git's: not the
    author of the commit as this repository records it."""
    github = _github_check(store)
    if github is not None:
        return github

    def local(user: str, model: ModelVersion, env: EnvironmentSpec) -> tuple[bool, str]:
        if not env.approver_not_author:
            return True, "recorded as given (no approver check configured)"
        return _not_author_locally(spec, store, user, model)

    return local


def _check_approver(spec: Spec, store: Store, user: str, model: ModelVersion,
                    env: EnvironmentSpec, check: ApproverCheck | None) -> tuple[bool, str]:
    chosen = approver_check(spec, store) if check is AUTO else check
    if chosen is None:
        return True, "recorded as given (no approver check configured)"
    return chosen(user, model, env)


def _not_author_locally(spec: Spec, store: Store, user: str,
                        model: ModelVersion) -> tuple[bool, str]:
    from cd4ml.integrations.git import commit_author

    sha = store.run(model.run_id).git_commit
    if not sha:
        return False, (f"{model.ref} records no git commit to check the approver against; set "
                       "approver_not_author: false for this environment to allow it")
    found = commit_author(sha, spec.root) or commit_author(sha, Path.cwd())
    if found is None:
        return False, (f"commit {sha[:12]} is not in this repository, so its author cannot be "
                       "checked; run from the repository (or with GITHUB_TOKEN set), or set "
                       "approver_not_author: false for this environment")
    name, email = found
    who = user.strip().lower()
    if who in {name.lower(), email.lower(), email.split("@")[0].lower()}:
        return False, (f"{user} wrote {sha[:12]} ({name} <{email}>); this environment needs an "
                       "approver who is not the author (approver_not_author)")
    return True, (f"{user} is not the author of {sha[:12]} ({name}), checked against git "
                  "(permission is checked on GitHub only with GITHUB_TOKEN)")


def _github_check(store: Store) -> ApproverCheck | None:
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


def record_review_approvals(spec: Spec, store: Store, model: ModelVersion, env: EnvironmentSpec,
                            check: ApproverCheck | None) -> str | None:
    """In a workflow whose job runs in ``env``'s GitHub environment, the people who approved
    its review are the approvers: each is checked like a named one and recorded (source
    github). Returns why every reviewer was refused, or None. Outside a workflow, or with no
    token, there is nothing to read."""
    if not (os.environ.get("GITHUB_TOKEN") and os.environ.get("GITHUB_RUN_ID")):
        return None
    from cd4ml.integrations.github import GitHubReporter

    reporter = GitHubReporter()
    if not reporter.enabled:
        return None
    refused = []
    for review in reporter.run_approvals():
        if review.state != "approved" or env.name not in review.environments:
            continue
        allowed, why = _check_approver(spec, store, review.user, model, env, check)
        if not allowed:
            refused.append(f"{review.user}: {why}")
            continue
        store.record_approval(model.id, env.name, review.user, ApprovalSource.GITHUB,
                              details={"check": why, "run_id": reporter.config.run_id,
                                       "comment": review.comment})
    if refused and not store.approvals(model.id, env.name):
        return (f"the '{env.name}' review of this workflow run was approved only by people who "
                f"may not approve {model.ref}: {'; '.join(refused)}")
    return None
