"""The GitHub Deployments listener: deployment events mirrored as GitHub Deployments.

A listener of :mod:`cd4ml.events` like the console, so GitHub shows what the terminal shows:
a deployment created in_progress when one starts (its payload names the model version, the
image digest, the approvers and any policy override), success or failure when it ends, and
the environment's deployments marked inactive when it is taken down. Each step of a canary or
shadow release is an in_progress status with its analysis' verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cd4ml.events import (
    Deployed,
    DeploymentFailed,
    DeploymentStarted,
    DeploymentStepped,
    Event,
    TakenDown,
)
from cd4ml.states import GitHubDeploymentState

if TYPE_CHECKING:
    from cd4ml.integrations.github import GitHubReporter


def github_listener(reporter: GitHubReporter) -> Callable[[Event], None]:
    """An event listener that mirrors deployments through ``reporter``."""
    ids: dict[int | None, int | None] = {}

    def listen(e: Event) -> None:
        if isinstance(e, DeploymentStarted):
            ids[e.deployment_id] = reporter.deployment_started(
                e.environment, e.pipeline, e.version, e.image, e.digest,
                ref=e.git_commit, description=e.message, override=e.override)
        elif isinstance(e, DeploymentStepped) and e.deployment_id in ids:
            # each canary or shadow step, with its analysis' verdict, as an in_progress status
            reporter.deployment_progress(ids[e.deployment_id], e.message[:140])
        elif isinstance(e, Deployed | DeploymentFailed) and e.deployment_id in ids:
            state = (GitHubDeploymentState.SUCCESS if isinstance(e, Deployed)
                     else GitHubDeploymentState.FAILURE)
            reporter.deployment_finished(ids.pop(e.deployment_id), state, e.url,
                                         description=e.message[:140])
        elif isinstance(e, TakenDown):
            reporter.deployment_replaced(e.environment, e.pipeline)

    return listen
