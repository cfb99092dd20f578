"""The world the story test plays in: a team's git repository with the wine pipeline, CI jobs
run as GitHub Actions runs them (``python -m cd4ml`` with the workflow's variables), the local
GitHub API server, a local registry, the Docker engine and a single-node Swarm.

    repository   git, in a temporary directory; every change is a commit by its author, also
                 known to the GitHub server (author, pull request) so that statuses, comments
                 and approver checks land on the same commit as in real life
    staging      target local (blue/green containers behind cd4ml's front), port 18401
    production   target swarm (a stack with the front's port in host mode), port 18402,
                 approval required and not by the commit's author
    store        the git store, as the scaffolded workflows default to it: a bare repository
                 in the temporary directory (git+file://...) that every job fetches from and
                 pushes to; a job may run from a fresh clone with an empty .cd4ml/

Nothing here decides what the story checks: that is test_story.py's job.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import git_as

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = "wine-story"
SPEC = "pipelines/wine.yaml"  # inside the story's repository
PORTS = {"staging": 18401, "production": 18402}
AUTHOR = "dana"  # writes the changes
REVIEWER = "erin"  # reviews them; gets write permission in chapter 4
LEAD = "octo-lead"  # approved the first production release
IMAGE_REPOSITORY = "cd4ml-e2e/wine-story"


@dataclass(frozen=True)
class Job:
    """One workflow run: the commit it runs on, the pull request (if any), who started it.
    Its steps (several cd4ml commands) share the run id."""

    sha: str
    branch: str
    actor: str
    pr: int | None
    run_id: int


@dataclass
class Story:
    tmp: Path
    repo: Path
    store_url: str
    gh: Any  # tests.ghserver.GitHubServer
    registry: Any  # tests.fixtures.registry.Registry
    base_env: dict[str, str]
    done: list[str] = field(default_factory=list)  # chapters that completed, in order
    notes: dict[str, Any] = field(default_factory=dict)  # what one chapter hands the next
    _runs: int = 7000

    # ------------------------------------------------------------------ git

    def git(self, *args: str, author: str = AUTHOR) -> str:
        return git_as(self.repo, *args, author=author, timeout=30)

    def commit(self, message: str, author: str = AUTHOR) -> str:
        """Commit everything changed, by ``author``; GitHub learns the commit and its author."""
        self.git("add", "-A", author=author)
        self.git("commit", "-q", "-m", message, author=author)
        sha = self.git("rev-parse", "HEAD")
        self.gh.add_commit(sha, author=author)
        return sha

    def branch(self, name: str) -> None:
        """A new branch off main; -f: whatever a failed chapter left uncommitted is dropped."""
        self.git("checkout", "-q", "-f", "-b", name, "main")

    def merge(self, name: str) -> str:
        """Merge a pull request's branch into main (fast-forward: main's head is its commit)."""
        self.git("checkout", "-q", "main")
        self.git("merge", "-q", "--ff-only", name)
        return self.git("rev-parse", "HEAD")

    def abandon(self) -> None:
        """Back on main, as after closing a pull request without merging it."""
        self.git("checkout", "-q", "main")

    def job(self, sha: str, branch: str, actor: str, pr: int | None = None) -> Job:
        """A new workflow run (its own GITHUB_RUN_ID) on ``sha``, started by ``actor``."""
        self._runs += 1
        return Job(sha=sha, branch=branch, actor=actor, pr=pr, run_id=self._runs)

    def pull_request(self, number: int, branch: str, sha: str, actor: str = AUTHOR) -> Job:
        """Open pull request ``number`` with head ``sha``; the workflow run it triggers."""
        self.gh.add_pull(number, sha)
        return self.job(sha, branch, actor, pr=number)

    # ------------------------------------------------------------------ files

    @property
    def spec_path(self) -> Path:
        return self.repo / SPEC

    @property
    def data_path(self) -> Path:
        return self.repo / "pipelines" / "data" / "wine.csv"

    def edit_spec(self, pattern: str, replacement: str) -> None:
        """A text edit of the spec, as a person makes it (comments and line numbers stay)."""
        text = self.spec_path.read_text()
        new, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert n == 1, f"{pattern!r} matched {n} times in the spec"
        self.spec_path.write_text(new)

    # ------------------------------------------------------------------ CI jobs

    def env(self, job: Job) -> dict[str, str]:
        """GitHub Actions' variables for ``job``: a pull_request event when it has a pull
        request, else a push to its branch."""
        if job.pr is not None:
            event = {"number": job.pr, "action": "synchronize",
                     "pull_request": {"number": job.pr, "head": {"sha": job.sha, "ref": job.branch},
                                      "base": {"ref": "main"}}}
        else:
            event = {"ref": f"refs/heads/{job.branch}", "after": job.sha}
        path = self.tmp / "events" / f"{job.run_id}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(event))
        env = dict(self.base_env)
        env.update({
            "GITHUB_ACTIONS": "true",
            "GITHUB_TOKEN": self.gh.token, "GITHUB_API_URL": self.gh.api_url,
            "GITHUB_SERVER_URL": self.gh.url, "GITHUB_REPOSITORY": self.gh.full_name,
            "GITHUB_SHA": job.sha, "GITHUB_RUN_ID": str(job.run_id), "GITHUB_ACTOR": job.actor,
            "GITHUB_EVENT_NAME": "pull_request" if job.pr is not None else "push",
            "GITHUB_EVENT_PATH": str(path), "GITHUB_WORKSPACE": str(self.repo),
            "GITHUB_STEP_SUMMARY": str(self.tmp / "events" / f"{job.run_id}-summary.md"),
            "GITHUB_REF_NAME": job.branch if job.pr is None else f"{job.pr}/merge",
        })
        if job.pr is not None:
            env["GITHUB_HEAD_REF"] = job.branch
        return env

    def cli(self, job: Job, *args: str, stdin: str | None = None, timeout: float = 300,
            where: Path | None = None) -> subprocess.CompletedProcess:
        """``cd4ml ARGS -p pipelines/wine.yaml`` in the repository, as a workflow step runs it;
        ``where``: in that checkout instead (see :meth:`fresh_runner`), with cd4ml's state in
        its own ``.cd4ml/``, as on a runner that kept nothing."""
        env = self.env(job)
        if where is not None:
            for k in ("CD4ML_HOME", "CD4ML_ARTIFACTS"):
                env.pop(k)
            env["GITHUB_WORKSPACE"] = str(where)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "cd4ml", *args], cwd=where or self.repo,
                             env=env, input=stdin, capture_output=True, text=True,
                             timeout=timeout, check=False)
        print(f"[{time.perf_counter() - t0:5.1f}s] cd4ml {' '.join(args)} -> {out.returncode}")
        return out

    def fresh_runner(self, name: str) -> Path:
        """A new runner's checkout of the current branch: a fresh clone, no ``.cd4ml/``."""
        where = self.tmp / name
        subprocess.run(["git", "clone", "-q", "-b", self.git("branch", "--show-current"),
                        str(self.repo), str(where)], check=True, capture_output=True, timeout=30)
        assert not (where / ".cd4ml").exists()
        return where

    def store(self):
        from cd4ml.store import Store

        return Store(self.store_url)

    def require(self, *chapters: str) -> None:
        """Fail at once, naming the chapter, when an earlier chapter this one stands on failed."""
        missing = [c for c in chapters if c not in self.done]
        if missing:
            import pytest

            pytest.fail(f"the story cannot go on: {', '.join(missing)} did not complete")

    # ------------------------------------------------------------------ GitHub's side

    def step_summary(self, job: Job) -> str:
        """What the job wrote to $GITHUB_STEP_SUMMARY."""
        return (self.tmp / "events" / f"{job.run_id}-summary.md").read_text()

    def comment(self, pr: int) -> str:
        """The pipeline's one comment on the pull request (there must be exactly one)."""
        mine = [c for c in self.gh.comments.get(pr, []) if f"<!-- cd4ml:{PIPELINE} -->" in c["body"]]
        assert len(mine) == 1, f"expected one cd4ml comment on #{pr}, found {len(mine)}"
        return mine[0]["body"]

    def check_run(self, sha: str) -> dict:
        runs = [r for r in self.gh.check_runs.values() if r["head_sha"] == sha]
        assert len(runs) == 1, f"expected one check run on {sha[:7]}, found {len(runs)}"
        return runs[0]

    def status(self, sha: str) -> dict:
        """The newest commit status of the pipeline's context on ``sha``."""
        found = [s for s in self.gh.statuses.get(sha, []) if s["context"] == f"cd4ml/{PIPELINE}"]
        assert found, f"no cd4ml/{PIPELINE} status on {sha[:7]}"
        return found[0]  # the server keeps them newest first

    def deployments(self, environment: str) -> list[dict]:
        """GitHub deployments of ``environment``, oldest first."""
        return sorted((d for d in self.gh.deployments.values() if d["environment"] == environment),
                      key=lambda d: d["id"])

    def deployment_states(self, deployment: dict) -> list[str]:
        """Its statuses' states, oldest first."""
        return [s["state"] for s in reversed(self.gh.deployment_statuses[deployment["id"]])]


# ---------------------------------------------------------------------------- set-up


def make_repository(repo: Path, registry_host: str) -> None:
    """The team's repository: the wine example (small forest, so training takes a second),
    pushed to the local registry, with staging on the local target and production on Swarm."""
    pipelines = repo / "pipelines"
    (pipelines / "data").mkdir(parents=True)
    (pipelines / "expectations").mkdir()
    shutil.copy(ROOT / "pipelines" / "data" / "wine.csv", pipelines / "data" / "wine.csv")
    shutil.copy(ROOT / "pipelines" / "expectations" / "wine.json",
                pipelines / "expectations" / "wine.json")
    text = (ROOT / "pipelines" / "wine.yaml").read_text()
    text = _sub(r"^name: wine$", f"name: {PIPELINE}", text)
    text = _sub(r"n_estimators: \d+", "n_estimators: 10", text)
    text = _sub(r"^(  base: .*)$", rf"\1\n  registry: {registry_host}\n"
                rf"  repository: {IMAGE_REPOSITORY}", text)
    head, _, _ = text.partition("\nenvironments:")
    environments = {
        "staging": {"target": "local", "port": PORTS["staging"], "auto_deploy": True,
                    "health_timeout": 30},
        # host-mode port on a one-node Swarm; this engine's Swarm cannot health-check tasks
        # (see tests/fixtures/deploy.py), cd4ml's pre-flight start and front guard instead
        "production": {"target": "swarm", "port": PORTS["production"], "replicas": 1,
                       "requires_approval": True, "healthcheck": False, "health_timeout": 40},
    }
    text = head + "\n" + yaml.safe_dump({"environments": environments}, sort_keys=False)
    (pipelines / "wine.yaml").write_text(text)
    (repo / ".gitignore").write_text(".cd4ml/\n")


def _sub(pattern: str, replacement: str, text: str) -> str:
    new, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert n == 1, f"{pattern!r} matched {n} times in pipelines/wine.yaml"
    return new


def base_env(tmp: Path, store_url: str) -> dict[str, str]:
    """The runner's environment: this machine's, without any GitHub or cd4ml setting of the
    session running the tests; cd4ml's state in the temporary directory."""
    # CI passes through as it is: it decides whether builds copy this machine's CA bundle, and
    # the same decision as the other tests' builds shares their Docker layers
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CD4ML_", "RUNNER_"))}
    env.update(CD4ML_HOME=str(tmp / "cd4ml-home"), CD4ML_ARTIFACTS=str(tmp / "artifacts"),
               CD4ML_STORE_URL=store_url, NO_COLOR="1",
               CD4ML_GITHUB_BACKOFF="0.01", PYTHONUNBUFFERED="1")
    for k in ("CD4ML_BASE_IMAGE", "CD4ML_BUILD_CA_BUNDLE"):
        if os.environ.get(k):
            env[k] = os.environ[k]
    if os.environ.get("PIP_CERT") and not env.get("CD4ML_BUILD_CA_BUNDLE"):
        # pip behind a TLS proxy; the same setting as the deploy tests, so layers are shared
        env["CD4ML_BUILD_CA_BUNDLE"] = os.environ["PIP_CERT"]
    return env
