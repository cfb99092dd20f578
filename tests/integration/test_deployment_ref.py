"""Which commit a GitHub Deployment names: the one the deployed model was trained from (a
rollback's is an old one), not the commit of the workflow that deploys it; and, when GitHub does
not know that commit, the workflow's, so that the deployment is still recorded."""

from __future__ import annotations

from cd4ml.events import Deployed, DeploymentStarted, TakenDown, emit, listening
from cd4ml.integrations.github import GitHubConfig, GitHubReporter
from cd4ml.release.ghdeploy import github_listener
from cd4ml.states import DeployAction, DeploymentStatus


def _reporter(gh, workflow_sha: str) -> GitHubReporter:
    return GitHubReporter(GitHubConfig(token=gh.token, api_url=gh.api_url, server_url=gh.url,
                                       repository=gh.full_name, sha=workflow_sha, run_id="77",
                                       actor="sam", backoff=0.01))


def _posted_refs(gh) -> list[str]:
    """The ref of every POST /deployments, answered or refused (an injected failure is
    answered before routing, so it carries no template to filter on)."""
    return [r.json["ref"] for r in gh.requests
            if r.method == "POST" and r.path == f"/repos/{gh.full_name}/deployments"]


def _release(version: int, git_commit: str | None, deployment_id: int) -> None:
    """The events cd4ml.release.deploy emits around one release."""
    data = {"stage": "rollback", "pipeline": "wine", "environment": "production",
            "action": DeployAction.ROLLBACK, "version": version, "image": f"reg/wine:{version}",
            "digest": None, "target": "swarm", "deployment_id": deployment_id}
    emit(DeploymentStarted(message=f"rollback wine:{version} to production (swarm)", **data,
                           status=DeploymentStatus.IN_PROGRESS, git_commit=git_commit))
    emit(Deployed(message=f"wine:{version} serves in production", **data,
                  url="http://127.0.0.1:8702", status=DeploymentStatus.HEALTHY))


def test_a_deployment_names_the_commit_its_model_came_from(github_server):
    gh = github_server
    trained_at, workflow_at = gh.add_commit(author="dana"), gh.add_commit(author="sam")
    with listening(github_listener(_reporter(gh, workflow_at))):
        _release(1, trained_at, deployment_id=5)
        _release(2, None, deployment_id=6)  # a model whose run recorded no commit
    first, second = sorted(gh.deployments.values(), key=lambda d: d["id"])
    assert (first["sha"], first["payload"]["model_version"]) == (trained_at, 1)
    assert (second["sha"], second["payload"]["model_version"]) == (workflow_at, 2)
    assert [s["state"] for s in reversed(gh.deployment_statuses[first["id"]])] == [
        "in_progress", "success", "inactive"]


def test_a_commit_github_does_not_know_falls_back_to_the_workflows(github_server):
    gh = github_server
    workflow_at = gh.add_commit(author="sam")
    never_pushed = "0123456789abcdef" * 2 + "01234567"
    gh.fail_next(1, status=422)  # GitHub: "No ref found for: <sha>"
    reporter = _reporter(gh, workflow_at)
    dep = reporter.deployment_started("production", "wine", 3, "reg/wine:3", None, ref=never_pushed)
    assert dep is not None and gh.deployments[dep]["sha"] == workflow_at
    assert _posted_refs(gh) == [never_pushed, workflow_at]


def test_other_refusals_are_not_retried_with_another_commit(github_server):
    gh = github_server
    workflow_at = gh.add_commit(author="sam")
    trained_at = gh.add_commit(author="dana")
    gh.fail_next(1, status=403)
    reporter = _reporter(gh, workflow_at)
    assert reporter.deployment_started("production", "wine", 3, "reg/wine:3", None,
                                       ref=trained_at) is None  # a warning, as before
    assert _posted_refs(gh) == [trained_at]


def test_a_take_down_leaves_no_active_github_deployment(github_server):
    gh = github_server
    trained_at, workflow_at = gh.add_commit(author="dana"), gh.add_commit(author="sam")
    with listening(github_listener(_reporter(gh, workflow_at))):
        _release(1, trained_at, deployment_id=5)
        emit(TakenDown(stage="down", message="production is down", pipeline="wine",
                       environment="production", action=DeployAction.DOWN, version=1,
                       image="reg/wine:1", digest=None, target="swarm",
                       status=DeploymentStatus.DOWN, deployment_id=8))
    (dep,) = gh.deployments.values()
    assert [s["state"] for s in reversed(gh.deployment_statuses[dep["id"]])] == [
        "in_progress", "success", "inactive"]
