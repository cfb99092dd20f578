"""The scaffolded workflows deploying, executed as GitHub Actions would (tests/actions), once the
repository is configured as README's set-up section says: a registry in the spec, a store in
the secret CD4ML_STORE_URL, a self-hosted runner that reaches the local target (CD4ML_RUNNER)
and keeps model artifacts (CD4ML_ARTIFACTS), and
the production environment's required reviewer.

A push to main builds, infra-validates, pushes and deploys to staging; the promote workflow,
once the reviewer approved, puts that version in production; a second push deploys a new
version to staging, and the rollback workflow puts the first one back.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from cd4ml.spec import load_spec
from tests.actions import Runner
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
def configured(tmp_path, package_index, actions_python, github_server, registry, docker_client):
    repo = user_repository(tmp_path, package_index, actions_python, name=NAME)
    path = repo.path / "pipelines" / f"{NAME}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["image"].update(registry=registry.host, repository=REPOSITORY)
    for env, port in PORTS.items():
        spec["environments"][env].update(port=port, health_timeout=30)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    repo.commit("deploy: our registry and ports", author=OWNER)
    github_server.set_permission("rita", "write")
    runner = Runner(tmp_path / "actions", github_server, repo.path, actions_python,
                    machine_env=package_index.pip_env,
                    secrets={"CD4ML_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}"},
                    variables={"CD4ML_RUNNER": "self-hosted",
                               "CD4ML_ARTIFACTS": str(tmp_path / "runner-artifacts")},
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


def test_push_deploys_to_staging_promote_with_approval_then_rollback(configured):
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

    spec = yaml.safe_load(spec_path.read_text())
    spec["drift"]["threshold"] = 0.3  # a new spec: retrained (the same model), version 2
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    (run,) = runner.push(repo.commit("tolerate more drift", author=OWNER))
    assert run.conclusion == "success", run.log()
    assert run.leaked == set()
    assert served_version(PORTS["staging"]) == 2

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
