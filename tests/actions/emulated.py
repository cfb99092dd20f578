"""The actions a workflow may ``uses:``, emulated on this machine, and the Python they set up.

- ``actions/checkout``: the repository at the run's commit, fetched shallowly into the
  workspace as GitHub's checkout does (a detached HEAD, depth 1), with the remote ``origin``
  set to the repository's address (GitHub's ``https://github.com/<owner>/<repo>``; here the
  runner's ``origin``) and, with ``persist-credentials: false``, no credentials kept.
- ``actions/setup-python``: a fresh virtual environment of this machine's Python (the
  version asked must be this one's), first on ``PATH``. Its third-party packages come from a
  *layer*: this interpreter's site-packages, linked one entry at a time, without cd4ml (which
  the system has installed editable from the integrator's checkout). So pip in the venv sees
  every dependency as installed and resolves offline, but finds no cd4ml: a workflow's install
  line really installs cd4ml, from the wheel in the local index or from the checkout.
- ``actions/upload-artifact`` / ``actions/download-artifact``: a folder per workflow run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: what the emulation of each action understands in ``with:``
KNOWN_WITH = {
    "actions/checkout": {"persist-credentials", "fetch-depth", "ref"},
    "actions/setup-python": {"python-version"},
    "actions/upload-artifact": {"name", "path", "include-hidden-files", "if-no-files-found",
                                "retention-days"},
    "actions/download-artifact": {"name", "path"},
}


class StepFailed(Exception):
    """The action failed as it would on GitHub (the step's outcome is failure)."""


class NotEmulated(Exception):
    """The workflow uses something this runner does not emulate: a test error, not a failure
    of the workflow."""


def _is_cd4ml(name: str) -> bool:
    low = name.lower()
    return low.startswith("cd4ml") or (low.startswith("__editable__") and "cd4ml" in low)


@dataclass(frozen=True)
class Python:
    """Makes the virtual environments of setup-python (see the module's docstring)."""

    layer: Path

    @classmethod
    def layered(cls, where: Path) -> Python:
        """A layer of this interpreter's site-packages without cd4ml, made once in ``where``."""
        site = Path(sysconfig.get_paths()["purelib"])
        where.mkdir(parents=True, exist_ok=True)
        for entry in site.iterdir():
            if not _is_cd4ml(entry.name) and not (where / entry.name).exists():
                (where / entry.name).symlink_to(entry)
        return cls(where)

    @property
    def version(self) -> str:
        return f"{sys.version_info.major}.{sys.version_info.minor}"

    def venv(self, path: Path) -> Path:
        """A fresh venv at ``path``; returns its bin directory."""
        if path.exists():
            shutil.rmtree(path)
        base = Path(getattr(sys, "_base_executable", sys.executable))
        subprocess.run([str(base), "-m", "venv", "--without-pip", str(path)], check=True,
                       capture_output=True, timeout=60)
        site = next(path.glob("lib/python*/site-packages"))
        # processed at start-up like any .pth: the layer's own .pth files run too
        (site / "_actions_layer.pth").write_text(f"import site; site.addsitedir({str(self.layer)!r})\n")
        return path / "bin"


@dataclass
class Job:
    """What an action may touch in the job that runs it."""

    workspace: Path
    tool_cache: Path
    repository: Path  # the git repository GitHub holds (the "remote")
    origin: str  # its address as checkout gives it to the remote origin
    sha: str
    artifacts: Path  # this workflow run's artifacts
    python: Python
    path: list[str] = field(default_factory=list)  # prepended to PATH, newest first
    env: dict[str, str] = field(default_factory=dict)  # added to later steps' environment


def _git(args: list[str], cwd: Path) -> None:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                         check=False)
    if out.returncode != 0:
        raise StepFailed(f"git {' '.join(args)}: {out.stderr.strip()}")


def checkout(job: Job, with_: dict[str, Any]) -> str:
    if with_.get("persist-credentials") not in (False, None):
        raise NotEmulated("checkout with persisted credentials: the workflows must not keep them")
    ref = with_.get("ref") or job.sha
    depth = int(with_.get("fetch-depth", 1))
    for child in job.workspace.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    _git(["init", "-q"], job.workspace)
    _git(["remote", "add", "origin", job.origin], job.workspace)
    _git(["fetch", "-q", *(["--depth", str(depth)] if depth else []), job.repository.as_uri(),
          f"+{ref}:refs/remotes/origin/checkout"], job.workspace)
    _git(["-c", "advice.detachedHead=false", "checkout", "-q", "--detach",
          "refs/remotes/origin/checkout"], job.workspace)
    return f"checked out {ref[:12]} (depth {depth or 'all'})"


def setup_python(job: Job, with_: dict[str, Any]) -> str:
    asked = str(with_.get("python-version", ""))
    if asked != job.python.version:
        raise NotEmulated(f"setup-python {asked!r}: this machine emulates {job.python.version} only")
    bin_dir = job.python.venv(job.tool_cache / "Python" / asked / "x64")
    job.path.insert(0, str(bin_dir))
    job.env["pythonLocation"] = str(bin_dir.parent)
    return f"python {asked} at {bin_dir.parent}"


def upload_artifact(job: Job, with_: dict[str, Any]) -> str:
    name, src = str(with_["name"]), job.workspace / str(with_["path"])
    hidden = bool(with_.get("include-hidden-files", False))
    files = [p for p in src.rglob("*") if p.is_file()] if src.is_dir() else ([src] if src.is_file() else [])
    if not hidden:  # upload-artifact v4.4+: hidden files stay out unless asked
        files = [p for p in files if not any(part.startswith(".") for part in p.relative_to(job.workspace).parts)]
    if not files:
        what = with_.get("if-no-files-found", "warn")
        if what == "error":
            raise StepFailed(f"no files found at {with_['path']}")
        return f"no files at {with_['path']}: no artifact ({what})"
    target = job.artifacts / name
    if target.exists():
        raise StepFailed(f"an artifact named {name!r} exists already in this run")
    for f in files:
        dest = target / (f.relative_to(src) if src.is_dir() else f.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    return f"uploaded {len(files)} files as {name}"


def download_artifact(job: Job, with_: dict[str, Any]) -> str:
    name = str(with_["name"])
    src = job.artifacts / name
    if not src.is_dir():
        raise StepFailed(f"Unable to download artifact(s): Artifact not found for name: {name}")
    dest = job.workspace / str(with_.get("path", "."))
    shutil.copytree(src, dest, dirs_exist_ok=True)
    return f"downloaded {name} to {with_.get('path', '.')}"


ACTIONS: dict[str, Callable[[Job, dict[str, Any]], str]] = {
    "actions/checkout": checkout,
    "actions/setup-python": setup_python,
    "actions/upload-artifact": upload_artifact,
    "actions/download-artifact": download_artifact,
}


def check_action(uses: str, with_: dict[str, Any]) -> str:
    """The emulated action's name; NotEmulated for any other action or input."""
    name = uses.split("@", 1)[0]
    if name not in ACTIONS:
        raise NotEmulated(f"uses: {uses}: no emulation of this action (only {', '.join(ACTIONS)})")
    unknown = set(with_) - KNOWN_WITH[name]
    if unknown:
        raise NotEmulated(f"uses: {uses}: with: {', '.join(sorted(unknown))} is not emulated")
    return name


def run_action(uses: str, job: Job, with_: dict[str, Any]) -> str:
    """Run one ``uses:`` step; returns its log line."""
    return ACTIONS[check_action(uses, with_)](job, with_)


def clean_env() -> dict[str, str]:
    """The machine's part of a job's environment: a plain PATH and locale, and only what this
    machine needs to reach the network and Docker (proxy CA bundles, DOCKER_HOST, a base image
    stand-in). Nothing of the test process (PYTHONPATH, CD4ML_*, GITHUB_*) leaks in."""
    keep = ("DOCKER_HOST", "CD4ML_BASE_IMAGE", "CD4ML_BUILD_CA_BUNDLE", "SSL_CERT_FILE",
            "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT", "LANG", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env.setdefault("LANG", "C.UTF-8")
    if os.environ.get("PIP_CERT") and "CD4ML_BUILD_CA_BUNDLE" not in env:
        env["CD4ML_BUILD_CA_BUNDLE"] = os.environ["PIP_CERT"]  # this machine's TLS proxy
    return env
