"""The scaffolded workflows on their default store, the git store, executed as GitHub Actions
would (tests/actions): the repository is a bare one served over HTTP by git's own
``git http-backend`` behind a token check (tests/fixtures/gitserver), checked out with
``origin`` at that address as GitHub's checkout does, and no store secret is set.

- The first push is green and leaves its records and the model's files on the branch
  ``cd4ml/state``, pushed with the workflow's token (never printed, never in a ``.git/config``).
- A pull request reads the branch and writes nothing to it, even when it trains and blesses a
  model of its own, and is green with a token that may not push (as ``contents: read`` gives).
- A second push, from a fresh clone and on runners whose ``.cd4ml/`` is empty, finds the first
  push's run and model on the branch.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.actions import Runner
from tests.actions.repos import GitRepo
from tests.integration.test_actions_scaffold import AUTHOR, OWNER, user_repository

BRANCH = "cd4ml/state"


def _git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(remote), *args], capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


def branch_files(remote: Path) -> list[str]:
    return _git(remote, "ls-tree", "-r", "--name-only", BRANCH).splitlines()


def branch_tip(remote: Path) -> str:
    return _git(remote, "rev-parse", BRANCH)


@pytest.fixture
def served(tmp_path, package_index, actions_python, github_server, git_http):
    """The scaffolded repository pushed to the HTTP server; its runner checks out from there."""
    git_http.token = github_server.token  # the workflow's own token is what the server takes
    repo = user_repository(tmp_path, package_index, actions_python)
    repo.git("push", "-q", str(git_http.repo), "main")
    runner = Runner(tmp_path / "actions", github_server, git_http.repo, actions_python,
                    machine_env=package_index.pip_env, origin=git_http.url)
    return repo, runner, git_http


def _no_token_in_git_config(root: Path, token: str) -> None:
    configs = [p for p in root.rglob("config") if p.parent.name in (".git", "repo.git")]
    assert configs, "the workflow's checkout and the git store's private repository exist"
    for config in configs:
        assert token not in config.read_text(), config


def test_the_git_store_carries_state_from_push_to_pull_request_to_the_next_push(served, tmp_path,
                                                                                github_server):
    repo, runner, server = served
    gh = github_server

    # 1. the first push: green, recorded on the branch with the model's files
    sha = repo.git("rev-parse", "HEAD")
    (run,) = runner.push(sha)
    assert run.conclusion == "success", run.log()
    assert run.leaked == set()
    _no_token_in_git_config(tmp_path / "actions", server.token)
    files = branch_files(server.repo)
    assert {"artifacts/wine/v1/model.pkl", "artifacts/wine/v1/model.json"} <= set(files)
    assert any(f.startswith("records/") for f in files)
    assert any("receive-pack" in path for method, path, _ in server.requests if method == "POST")
    deploy = run.job("deploy-staging", pipeline="wine")
    assert "CD4ML_STORE_URL" not in deploy.summary and "CD4ML_ARTIFACTS" not in deploy.summary
    log = _git(server.repo, "log", "--format=%s", BRANCH)
    assert "register_model: wine" in log, log
    after_push = branch_tip(server.repo)

    # 2. a pull request that trains a model of its own: read from the branch, nothing written
    repo.branch("fewer-trees")
    spec_path = repo.path / "pipelines" / "wine.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["model"]["params"]["n_estimators"] = 60
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    head = repo.commit("fewer trees", author=AUTHOR)
    repo.git("push", "-q", str(server.repo), "fewer-trees")
    server.requests.clear()
    server.read_only = True  # the pull-request job's token (contents: read) may not push
    (run,) = runner.pull_request(8, head, "fewer-trees", action="opened")
    server.read_only = False
    assert run.conclusion == "success", run.log()
    assert run.leaked == set()
    job = run.job("pull-request", pipeline="wine")
    assert "blessed" in job.step("validate, train, evaluate and gate").log
    assert branch_tip(server.repo) == after_push  # the PR's model v2 is not on the branch
    assert not any("receive-pack" in path for _, path, _ in server.requests)
    # reported all the same, numbered after main's v1: it read the branch
    assert "model v2 blessed" in gh.comments[8][0]["body"], gh.comments[8][0]["body"]
    assert not any(f.startswith("artifacts/wine/v2/") for f in branch_files(server.repo))

    # 3. a second push from a fresh clone: its runners start empty and find the first run
    clone = GitRepo.cloned(server.repo, tmp_path / "fresh-clone")
    assert not (clone.path / ".cd4ml").exists()
    (clone.path / "NOTES.md").write_text("notes that do not touch the pipeline\n")
    second = clone.commit("notes", author=OWNER)
    clone.git("push", "-q", "origin", "main")
    (run,) = runner.push(second)
    assert run.conclusion == "success", run.log()
    assert run.leaked == set()
    log = run.job("pipeline", pipeline="wine").step("validate, train, evaluate and gate").log
    assert "inputs unchanged" in log and "reusing" in log, log
    assert branch_tip(server.repo) != after_push  # the reuse is recorded (a run of its own)
    assert not any(f.startswith("artifacts/wine/v2/") for f in branch_files(server.repo))
