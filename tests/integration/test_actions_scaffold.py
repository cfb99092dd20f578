"""The workflows ``cd4ml init`` writes, executed as GitHub Actions would (tests/actions): a new
repository goes green on its first push, and its pull requests get the cd4ml comment.

The user installs cd4ml from the package index (here: a wheel of this checkout in a local
folder index), runs ``cd4ml init`` on the wine data, commits and pushes; every job installs
the cd4ml that ran init (``cd4ml[postgres]==<version>``) in a fresh venv, and talks to the
local GitHub API server.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cd4ml import __version__
from tests.actions import Runner
from tests.actions.repos import GitRepo
from tests.ghserver import COMMENT, COMMENTS

ROOT = Path(__file__).resolve().parents[2]
OWNER = "octo-org"  # pushes to main
AUTHOR = "dana"  # opens the pull request


def user_repository(tmp: Path, index, python, name: str | None = None) -> GitRepo:
    """A repository scaffolded as README says: pip install cd4ml, then ``cd4ml init``."""
    repo = GitRepo(tmp / "repo")
    (repo.path / "data").mkdir()
    shutil.copy(ROOT / "pipelines" / "data" / "wine.csv", repo.path / "data" / "wine.csv")
    bin_dir = python.venv(tmp / "user-venv")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp), **index.pip_env}
    for argv in ([str(bin_dir / "python"), "-m", "pip", "install", f"cd4ml=={__version__}"],
                 [str(bin_dir / "cd4ml"), "init", "--data", "data/wine.csv", "--target", "target",
                  *(["--name", name] if name else [])]):
        out = subprocess.run(argv, cwd=repo.path, env=env, capture_output=True, text=True,
                             timeout=300, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
    repo.commit("cd4ml init", author=OWNER)
    return repo


def state(gh, sha: str) -> str:
    """The newest commit status cd4ml/wine of ``sha``."""
    return next(s["state"] for s in gh.statuses[sha] if s["context"] == "cd4ml/wine")


@pytest.fixture
def scaffolded(tmp_path, package_index, actions_python, github_server):
    repo = user_repository(tmp_path, package_index, actions_python)
    runner = Runner(tmp_path / "actions", github_server, repo.path, actions_python,
                    machine_env=package_index.pip_env)
    return repo, runner, github_server


def test_the_workflows_install_the_release_that_ran_init(scaffolded):
    repo, _, _ = scaffolded
    for name in ("cd4ml.yml", "promote.yml", "rollback.yml", "monitor.yml"):
        text = (repo.path / ".github" / "workflows" / name).read_text()
        assert f"CD4ML_INSTALL: ${{{{ vars.CD4ML_INSTALL || 'cd4ml[postgres]=={__version__}' }}}}" in text
        assert ".[postgres]" not in text and "wine" in text
    assert not (repo.path / ".github" / "workflows" / "ci.yml").exists()


def test_the_first_push_is_green_and_says_what_deploying_needs(scaffolded):
    repo, runner, gh = scaffolded
    sha = repo.git("rev-parse", "HEAD")
    (run,) = runner.push(sha)
    assert (run.workflow, run.conclusion) == ("cd4ml.yml", "success"), run.log()
    assert run.leaked == set()  # no secret, no token in a log

    pipeline = run.job("pipeline", pipeline="wine")
    install = pipeline.step("install cd4ml").log
    assert re.search(rf"Processing .*cd4ml-{re.escape(__version__)}-py3-none-any\.whl", install), install
    assert f"Successfully installed cd4ml-{__version__}" in install
    assert "nothing keeps it" not in pipeline.summary  # the git store keeps it
    assert state(gh, sha) == "success"

    deploy = run.job("deploy-staging", pipeline="wine")
    assert deploy.result == "success" and deploy.runs_on == "ubuntu-latest"
    skipped = [s.name for s in deploy.steps if s.outcome == "skipped"]
    assert skipped == ["log in to the registry", "build, infra-validate and push the image",
                       "deploy to staging"]
    assert "deploying wine to staging skipped" in deploy.summary
    for what in ("image.registry in wine.yaml", "CD4ML_RUNNER", "Set up cd4ml in your repository"):
        assert what in deploy.summary, deploy.summary
    for what in ("CD4ML_STORE_URL", "CD4ML_ARTIFACTS"):  # the git store: no store, no directory
        assert what not in deploy.summary, deploy.summary
    assert any(kind == "notice" and "skipped" in title for kind, title, _ in deploy.annotations)
    assert gh.deployments == {}


def _spec(repo: GitRepo) -> Path:
    return repo.path / "pipelines" / "wine.yaml"


def test_a_pull_request_that_worsens_the_model_fails_then_its_fix_turns_the_comment_green(scaffolded):
    repo, runner, gh = scaffolded
    repo.branch("one-feature")
    spec = yaml.safe_load(_spec(repo).read_text())
    spec["data"]["features"] = ["ash"]  # a weak feature alone: accuracy drops under the gate
    _spec(repo).write_text(yaml.safe_dump(spec, sort_keys=False))
    worse = repo.commit("use ash only", author=AUTHOR)

    (run,) = runner.pull_request(7, worse, "one-feature", action="opened")
    assert run.conclusion == "failure", run.log()
    assert run.leaked == set()
    job = run.job("pull-request", pipeline="wine")
    assert job.step("validate, train, evaluate and gate").outcome == "failure"
    assert job.step("report to GitHub").outcome == "success"  # a failed gate is reported
    assert [j.result for j in run.jobs if j.id == "deploy-staging"] == ["skipped"]
    (comment,) = gh.comments[7]
    first = dict(comment)  # the server edits its comments in place
    assert "accuracy" in first["body"] and "0.55" in first["body"], first["body"]
    assert re.search(r"accuracy[^\n]*FAIL|FAIL[^\n]*accuracy|❌[^\n]*accuracy", first["body"]), first["body"]
    assert state(gh, worse) == "failure"

    del spec["data"]["features"]
    _spec(repo).write_text(yaml.safe_dump(spec, sort_keys=False))
    fixed = repo.commit("back to every feature", author=AUTHOR)
    (run,) = runner.pull_request(7, fixed, "one-feature")
    assert run.conclusion == "success", run.log()
    assert run.leaked == set()
    (edited,) = gh.comments[7]  # one comment, edited in place
    assert edited["id"] == first["id"] and edited["body"] != first["body"]
    assert "blessed" in edited["body"] and "❌" not in edited["body"]
    assert len(gh.calls("PATCH", COMMENT)) == 1 and len(gh.calls("POST", COMMENTS)) == 1
    assert state(gh, fixed) == "success"
