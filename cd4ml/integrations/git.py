"""Git facts about the working repository: commit, branch, dirty, actor.

In GitHub Actions the workflow's own variables win (a pull request's checkout is a detached
merge commit, whose branch git cannot name)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitInfo:
    commit: str | None
    branch: str | None
    dirty: bool
    actor: str | None


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
    return GitInfo(commit=commit, branch=branch, dirty=bool(status), actor=actor)


def remote_url(name: str, cwd: str | Path | None = None) -> str | None:
    """The URL of the working repository's remote ``name`` (e.g. ``origin``); None without one."""
    return _git(["remote", "get-url", name], Path(cwd or Path.cwd()))
