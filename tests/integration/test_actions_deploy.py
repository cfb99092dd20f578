"""The scaffolded workflows deploying, executed as GitHub Actions would (tests/actions), once the
repository is configured as README's set-up section says: a registry in the spec, a self-hosted
runner that reaches the local target (CD4ML_RUNNER), and the production environment's required
reviewer. No store and no artifact directory are configured: the workflows' default, the git
store, keeps both on the branch cd4ml/state of the repository, here a bare repository served
over HTTP by git's own ``git http-backend`` (tests/fixtures/gitserver) and checked out with
``origin`` at that address.

A push to main builds, infra-validates, pushes and deploys to staging; the promote workflow,
once the reviewer approved, puts that version in production; a second push, from a fresh clone
and on runners whose ``.cd4ml/`` is empty, is compared with the version serving in production
(found on the branch, model files included) and deploys its own new version to staging; the
rollback workflow puts the first one back.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from cd4ml.spec import load_spec
from tests.actions import Runner
from tests.actions.repos import GitRepo
from tests.fixtures.deploy import served_version
from tests.integration.test_actions_scaffold import OWNER, user_repository

pytestmark = pytest.mark.docker

NAME = "actions-wine"
PORTS = {"staging": 18711, "production": 18712}
REPOSITORY = "cd4ml-actions/wine"


def _teardown(spec_path) -> None:
    from cd4ml.release.targets.local import LocalTarget

    spec = load_spec(spec_path)
    for env in spec.environments:
        LocalTarget().teardown(spec, env)
    # the workflow derived its project on its own checkout: whatever it was, this test's
    # pipeline name is its own, so its containers and networks go by that
    def ids(*argv: str) -> list[str]:
        return subprocess.run(["docker", *argv], capture_output=True, text=True,
                              check=False).stdout.split()

    left = ids("ps", "-aq", "--filter", f"label=cd4ml.pipeline={NAME}")
    if left:
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True, check=False)
    nets = [n for n in ids("network", "ls", "--format", "{{.Name}}") if n.endswith(
        tuple(f"-{NAME}-{env}" for env in PORTS))]
    if nets:
        subprocess.run(["docker", "network", "rm", *nets], capture_output=True, check=False)


@pytest.fixture
def configured(tmp_path, package_index, actions_python, github_server, registry, docker_client,
               git_http):
    git_http.token = github_server.token  # the workflow's own token is what the server takes
    repo = user_repository(tmp_path, package_index, actions_python, name=NAME)
    path = repo.path / "pipelines" / f"{NAME}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["image"].update(registry=registry.host, repository=REPOSITORY)
    for env, port in PORTS.items():
        spec["environments"][env].update(port=port, health_timeout=30)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    repo.commit("deploy: our registry and ports", author=OWNER)
    repo.git("push", "-q", str(git_http.repo), "main")
    github_server.set_permission("rita", "write")
    runner = Runner(tmp_path / "actions", github_server, git_http.repo, actions_python,
                    machine_env=package_index.pip_env, origin=git_http.url,
                    variables={"CD4ML_RUNNER": "self-hosted"},
                    approvers={"production": ("rita",)})
    _teardown(path)
    try:
        yield repo, runner, github_server, path
    finally:
        _teardown(path)
        images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                                capture_output=True, text=True, check=False).stdout.split()
        mine = [i for i in images if i.split(":")[-2].endswith(REPOSITORY)]
        if mine:
            subprocess.run(["docker", "rmi", "-f", *mine], capture_output=True, check=False)


def _deployments(gh, environment: str) -> list[tuple[int, str]]:
    """(model version, newest state) of each GitHub Deployment to ``environment``, oldest first."""
    out = []
    for did, d in sorted(gh.deployments.items()):
        if d["environment"] == environment:
            out.append((d["payload"]["model_version"], gh.deployment_statuses[did][0]["state"]))
    return out


def test_push_deploys_to_staging_promote_with_approval_then_rollback(configured, tmp_path):
    repo, runner, gh, spec_path = configured
    (run,) = runner.push(repo.git("rev-parse", "HEAD"))
    assert run.conclusion == "success", run.log()
    assert run.leaked == set()  # no secret, no token in a log
    deploy = run.job("deploy-staging", pipeline=NAME)
    assert deploy.runs_on == "self-hosted"
    assert [s.outcome for s in deploy.steps][-3:] == ["success"] * 3, run.log()
    assert "pushed" in deploy.step("build, infra-validate and push the image").log
    assert served_version(PORTS["staging"]) == 1
    assert _deployments(gh, "staging") == [(1, "success")]

    promoted = runner.dispatch("promote.yml", {"pipeline": NAME, "version": "1"}, actor=OWNER)
    assert promoted.conclusion == "success", promoted.log()
    assert promoted.leaked == set()
    assert promoted.job("promote").environment == "production"
    assert served_version(PORTS["production"]) == 1
    assert _deployments(gh, "production") == [(1, "success")]

    clone = GitRepo.cloned(runner.repository, tmp_path / "fresh-clone")
    fresh_spec = clone.path / spec_path.relative_to(repo.path)
    spec = yaml.safe_load(fresh_spec.read_text())
    spec["drift"]["threshold"] = 0.3  # a new spec: retrained (the same model), version 2
    fresh_spec.write_text(yaml.safe_dump(spec, sort_keys=False))
    second = clone.commit("tolerate more drift", author=OWNER)
    clone.git("push", "-q", "origin", "main")
    (run,) = runner.push(second)
    assert run.conclusion == "success", run.log()
    assert run.leaked == set()
    # compared with what the first push put in production, found on the branch by a runner
    # that started with nothing
    pipeline = run.job("pipeline", pipeline=NAME)
    assert f"Baseline: {NAME}:1, the version serving in production" in pipeline.summary, pipeline.summary
    # scored on the same held-out rows: the production model's files came from the branch
    assert "candidate vs production v1" in pipeline.summary, pipeline.summary
    assert served_version(PORTS["staging"]) == 2  # this commit's version

    rolled = runner.dispatch("rollback.yml", {"pipeline": NAME, "environment": "staging",
                                              "reason": "v2 answers slowly"}, actor=OWNER)
    assert rolled.conclusion == "success", rolled.log()
    assert rolled.leaked == set()
    assert served_version(PORTS["staging"]) == 1
    assert served_version(PORTS["production"]) == 1


def test_promote_waits_while_nobody_approved(configured):
    _, runner, _, _ = configured
    runner.approvers["production"] = ()
    run = runner.dispatch("promote.yml", {"pipeline": NAME, "version": "1"}, actor=OWNER)
    assert run.job("promote").result == "waiting" and run.job("promote").steps == []
