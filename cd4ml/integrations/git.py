"""Git facts about the working repository: commit, branch, dirty, actor.

In GitHub Actions the workflow's own variables win (a pull request's checkout is a detached
merge commit, whose branch git cannot name)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class GitInfo:
    commit: str | None
    branch: str | None
    dirty: bool
    actor: str | None
    #: who produced a run when CI did: ``ci.workflow``, ``ci.run_id``, ``ci.ref``, ... (empty
    #: outside GitHub Actions)
    producer: dict[str, str] = field(default_factory=dict)

    @property
    def tags(self) -> dict[str, object]:
        """What a run records of its origin beside commit, branch and actor."""
        return {**({"dirty": True} if self.dirty else {}), **self.producer}


#: tag -> GitHub Actions variable, recorded on every run CI starts
_CI_TAGS = {"ci.repository": "GITHUB_REPOSITORY", "ci.workflow": "GITHUB_WORKFLOW",
            "ci.run_id": "GITHUB_RUN_ID", "ci.run_attempt": "GITHUB_RUN_ATTEMPT",
            "ci.event": "GITHUB_EVENT_NAME", "ci.ref": "GITHUB_REF", "ci.actor": "GITHUB_ACTOR",
            "ci.sha": "GITHUB_SHA"}


def ci_producer(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The CI identity of this process (GitHub Actions' own variables, and the repository's
    default branch from the event payload), or ``{}`` outside CI."""
    import json

    env = os.environ if environ is None else environ
    if env.get("GITHUB_ACTIONS") != "true":
        return {}
    out = {tag: env[var] for tag, var in _CI_TAGS.items() if env.get(var)}
    try:
        with open(env.get("GITHUB_EVENT_PATH") or "", encoding="utf-8") as f:
            default = json.load(f).get("repository", {}).get("default_branch")
    except (OSError, ValueError, AttributeError):
        default = None
    if isinstance(default, str) and default:
        out["ci.default_branch"] = default
    return out


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(cwd: str | Path | None = None) -> GitInfo:
    """Commit, branch, dirtiness and actor; None where there is no repository."""
    where = Path(cwd or Path.cwd())
    commit = os.environ.get("GITHUB_SHA") or _git(["rev-parse", "HEAD"], where)
    branch = (os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME")
              or _git(["rev-parse", "--abbrev-ref", "HEAD"], where))
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    actor = (os.environ.get("GITHUB_ACTOR") or _git(["config", "user.name"], where)
             or os.environ.get("USER"))
    return GitInfo(commit=commit, branch=branch, dirty=bool(status), actor=actor,
                   producer=ci_producer())


def repository_name(where: Path) -> str | None:
    """The repository ``where`` lies in, by name: the last part of the ``origin`` remote's
    address (``git@github.com:acme/churn.git`` -> ``churn``), else its top folder's name;
    None outside a repository."""
    top = _git(["rev-parse", "--show-toplevel"], where)
    if not top:
        return None
    origin = remote_url("origin", where)
    if origin:
        name = origin.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        name = name.removesuffix(".git")
        if name:
            return name
    return Path(top).name


def commit_author(commit: str, where: Path) -> tuple[str, str] | None:
    """(name, email) of the author of ``commit`` in the repository at ``where``; None when git
    does not know the commit there."""
    out = _git(["log", "-1", "--format=%an%x00%ae", commit, "--"], where)
    if not out or "\x00" not in out:
        return None
    name, email = out.split("\x00", 1)
    return name, email


def remote_url(name: str, cwd: str | Path | None = None) -> str | None:
    """The URL of the working repository's remote ``name`` (e.g. ``origin``); None without one."""
    return _git(["remote", "get-url", name], Path(cwd or Path.cwd()))
