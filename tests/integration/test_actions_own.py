"""cd4ml's own workflows (.github/workflows/), executed as GitHub Actions would (tests/actions):
they install cd4ml from the checkout, run and report both example pipelines, and skip the
staging deploy with a notice on a repository without a deploy runner or registry.

No store is configured: the workflows' default, the git store on the branch cd4ml/state of
the repository itself (here a bare copy of the checkout, reached as a file URL), carries the
runs and models from the push to the pull request after it, which reads them and writes
nothing.
``ci.yml`` runs this very test suite: it is checked (every key and ``uses:`` emulated, every
expression evaluated, every script parsed by bash) but its script is not executed.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.actions import Runner

PIPELINES = ("wine", "diabetes")


@pytest.fixture
def own(tmp_path, package_index, actions_python, github_server):
    remote = tmp_path / "own.git"  # this test's own: the session's checkout is never written
    subprocess.run(["git", "clone", "-q", "--bare", str(package_index.checkout.path), str(remote)],
                   check=True, timeout=120)
    runner = Runner(tmp_path / "actions", github_server, remote, actions_python,
                    machine_env=package_index.pip_env)
    return package_index, runner, github_server


def test_own_workflows_on_push_and_pull_request(own):
    index, runner, gh = own
    repo = index.checkout
    sha = repo.git("rev-parse", "HEAD")
    (run,) = runner.push(sha, only=("cd4ml.yml",))
    assert run.conclusion == "success", run.log()
    assert run.leaked == set()  # no secret, no token in a log
    for p in PIPELINES:
        install = run.job("pipeline", pipeline=p).step("install cd4ml").log
        # built from the checkout, not taken from the index's wheel
        assert "Building wheel for cd4ml" in install and str(index.wheel) not in install, install
        assert "Successfully installed cd4ml-" in install, install
        deploy = run.job("deploy-staging", pipeline=p)
        assert deploy.result == "success"
        assert deploy.step("deploy to staging").outcome == "skipped"
        assert f"deploying {p} to staging skipped" in deploy.summary
        assert "CD4ML_STORE_URL" not in deploy.summary  # configured: not asked for
        assert "CD4ML_ARTIFACTS" not in deploy.summary and "CD4ML_RUNNER" in deploy.summary
    assert {s["context"] for s in gh.statuses[sha]} == {f"cd4ml/{p}" for p in PIPELINES}

    remote = runner.repository
    state = subprocess.run(["git", "--git-dir", str(remote), "rev-parse", "cd4ml/state"],
                           capture_output=True, text=True, check=True).stdout
    repo.branch("docs")
    (repo.path / "NOTES.md").write_text("a change that does not touch the pipelines\n")
    head = repo.commit("notes", author="dana")
    repo.git("push", "-q", str(remote), "docs")
    (run,) = runner.pull_request(21, head, "docs", only=("cd4ml.yml",))
    assert run.conclusion == "success", run.log()
    assert run.leaked == set()
    assert [j.result for j in run.jobs if j.id == "deploy-staging"] == ["skipped", "skipped"]
    assert len(gh.comments[21]) == len(PIPELINES)
    for p in PIPELINES:  # same data, spec and code as on main: the recorded run answers
        log = run.job("pull-request", pipeline=p).step("validate, train, evaluate and gate").log
        assert "inputs unchanged" in log and "reusing" in log, log
    # read from the branch, and nothing written to it
    assert subprocess.run(["git", "--git-dir", str(remote), "rev-parse", "cd4ml/state"],
                          capture_output=True, text=True, check=True).stdout == state


def test_ci_workflow_is_fully_emulated(own):
    index, runner, _ = own
    runner.dry_run = True
    sha = index.checkout.git("rev-parse", "HEAD")
    (run,) = runner.push(sha, only=("ci.yml",))
    assert run.conclusion == "success", run.log()
    assert run.leaked == set()
    assert [s.outcome for s in run.job("test").steps] == ["success"] * 3
