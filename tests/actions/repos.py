"""Git repositories for workflow runs: a snapshot of this checkout (what cd4ml's own workflows
run on, uncommitted changes included) and a user's repository that changes by commits."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


class GitRepo:
    """A repository on ``main`` whose changes are commits by named authors."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, author: str = "octo-org") -> str:
        out = subprocess.run(
            ["git", "-c", f"user.name={author}", "-c", f"user.email={author}@example.com",
             "-c", "commit.gpgsign=false", *args],
            cwd=self.path, capture_output=True, text=True, timeout=60, check=False)
        if out.returncode != 0:
            raise AssertionError(f"git {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout.strip()

    def commit(self, message: str, author: str = "octo-org") -> str:
        self.git("add", "-A", author=author)
        self.git("commit", "-q", "--allow-empty", "-m", message, author=author)
        return self.git("rev-parse", "HEAD")

    def branch(self, name: str, start: str = "main") -> None:
        self.git("checkout", "-q", "-B", name, start)

    @classmethod
    def cloned(cls, remote: Path, path: Path) -> GitRepo:
        """A fresh clone of ``remote`` at ``path`` (its ``origin``), on main."""
        subprocess.run(["git", "clone", "-q", "-b", "main", str(remote), str(path)], check=True,
                       capture_output=True, timeout=120)
        repo = cls.__new__(cls)
        repo.path = path
        return repo


def snapshot(src: Path, dest: Path) -> GitRepo:
    """``src``'s tracked and untracked-but-not-ignored files, committed as one commit."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=src,
                            capture_output=True, check=True, timeout=60).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        s, d = src / rel, dest / rel
        if not s.exists() and not s.is_symlink():
            continue  # deleted in the working tree
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_symlink():
            d.symlink_to(s.readlink())
        else:
            shutil.copy2(s, d)
    repo = GitRepo(dest)
    repo.commit("snapshot of the checkout")
    return repo
