"""The one seam to the git remote that holds the git store's branch (see cd4ml/store/gitstore.py).

The objects live in a private bare repository under ``.cd4ml/`` (never the user's checkout: a
shallow CI clone, its index and its refs stay untouched). The remote's URL and the token's
``http.extraHeader`` reach git through ``GIT_CONFIG_*`` variables, so neither is written to a
``.git/config``, nor appears in a logged command line, nor in an error message.

A write is a commit whose parent is the tip this process last saw, pushed with
``--force-with-lease=<branch>:<that tip>``: the remote takes it only if nobody moved the branch
in between (compare-and-swap); an empty expected value means "the branch must not exist yet".
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cd4ml.errors import CommandError, StoreError
from cd4ml.integrations.proc import call

#: the remote's name inside the private repository; its URL is configured through the environment
REMOTE = "cd4ml-state"
TRACKING = "refs/cd4ml/tip"

_GONE = ("couldn't find remote ref", "could not find remote ref")
# lost the race: the lease, or (a push landing at the same moment) the remote's ref lock
_STALE = ("stale info", "fetch first", "non-fast-forward", "already exists",
          "failed to update ref", "cannot lock ref", "incorrect old value")


class Push(StrEnum):
    """How a compare-and-swap push ended."""

    PUSHED = "pushed"
    STALE = "stale"  # someone else moved the branch first: fetch, replay, retry


@dataclass(frozen=True)
class Added:
    """A file a commit of the branch added (``status`` A) or changed afterwards (M, D...)."""

    commit: str
    path: str
    blob: str
    status: str


def redact_url(url: str) -> str:
    """A remote URL fit to print: any user:password@ part removed."""
    return re.sub(r"//[^/@]*@", "//***@", url)


class StateRepo:
    """The branch ``branch`` of ``url``, mirrored in the bare repository ``path``."""

    def __init__(self, url: str, branch: str, path: Path, token: str | None = None):
        self.url, self.branch, self.path = url, branch, path
        config = {f"remote.{REMOTE}.url": url, "core.bare": "true", "gc.auto": "0"}
        if token and url.startswith(("http://", "https://")):
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            config[f"http.{url}.extraheader"] = f"AUTHORIZATION: basic {basic}"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GIT_CONFIG_", "GIT_DIR", "GIT_INDEX_FILE", "GIT_WORK_TREE"))}
        env.update(GIT_DIR=str(path), GIT_TERMINAL_PROMPT="0", LC_ALL="C",
                   GIT_CONFIG_COUNT=str(len(config)))
        for i, (key, value) in enumerate(config.items()):
            env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
        self._env = env
        if not (path / "HEAD").exists():
            path.mkdir(parents=True, exist_ok=True)
            self.git("init", "--bare", "--quiet", str(path))

    def git(self, *args: str, input: str | None = None, check: bool = True,
            index: str | None = None, timeout: float = 300):
        env = self._env if index is None else {**self._env, "GIT_INDEX_FILE": index}
        return call(["git", *args], input=input, check=check, env=env, timeout=timeout)

    # ---- reading the branch

    def fetch(self) -> str | None:
        """Bring the branch's new commits here; its tip, or None when the branch does not exist."""
        out = self.git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                       "--no-show-forced-updates", "--no-auto-maintenance", REMOTE,
                       f"+refs/heads/{self.branch}:{TRACKING}", check=False)
        if out.returncode != 0:
            if any(s in out.stderr for s in _GONE):
                self.git("update-ref", "-d", TRACKING, check=False)
                return None
            raise StoreError(f"git store: cannot fetch branch {self.branch!r} from "
                             f"{redact_url(self.url)}: {_tail(out.stderr)}; check the URL, the "
                             "network and that GITHUB_TOKEN may read the repository")
        return self.tip()

    def tip(self) -> str | None:
        """The branch tip as last fetched (no network)."""
        out = self.git("rev-parse", "--verify", "--quiet", TRACKING, check=False)
        return out.stdout.strip() or None

    def is_ancestor(self, old: str, new: str) -> bool:
        return self.git("merge-base", "--is-ancestor", old, new, check=False).returncode == 0

    def changes(self, since: str | None, tip: str) -> list[Added]:
        """Every file touched by the commits after ``since`` up to ``tip``, oldest first."""
        spec = f"{since}..{tip}" if since else tip
        out = self.git("log", "--reverse", "--first-parent", "--no-renames", "--raw",
                       "--no-abbrev", "--format=%x00%H", spec).stdout
        found: list[Added] = []
        for chunk in out.split("\0")[1:]:  # one commit: its id, then a line per file it touched
            commit, *lines = chunk.split("\n")
            for line in lines:
                if line.startswith(":"):
                    meta, path = line.split("\t", 1)
                    parts = meta.split(" ")
                    found.append(Added(commit, path, parts[3], parts[4][0]))
        return found

    def blobs(self, shas: list[str]) -> list[bytes]:
        """The contents of ``shas``, read by one ``git cat-file --batch``."""
        if not shas:
            return []
        proc = subprocess.run(["git", "cat-file", "--batch"], input="\n".join(shas).encode() + b"\n",
                              capture_output=True, env=self._env, check=False, timeout=300)
        if proc.returncode != 0:
            raise CommandError(["git", "cat-file", "--batch"], proc.returncode, proc.stderr.decode())
        data, pos, found = proc.stdout, 0, []
        for _ in shas:
            end = data.index(b"\n", pos)
            header = data[pos:end].split()
            if header[-1] == b"missing":
                raise StoreError(f"git store: object {header[0].decode()} is missing from "
                                 f"{self.path}; delete that directory to fetch it again")
            size = int(header[2])
            found.append(data[end + 1:end + 1 + size])
            pos = end + 1 + size + 1
        return found

    def read(self, commit: str, path: str) -> bytes | None:
        out = self.git("rev-parse", "--verify", "--quiet", f"{commit}:{path}", check=False)
        return self.blobs([out.stdout.strip()])[0] if out.returncode == 0 else None

    # ---- writing the branch

    def commit(self, parent: str | None, files: dict[str, bytes | Path], message: str,
               author: str) -> str:
        """A commit adding ``files`` (branch path -> content or local file) on top of ``parent``, made by one
        ``git fast-import`` (blobs, trees and commit in one process; small ones stay loose)."""
        when = f"{int(time.time())} +0000"
        ref = f"refs/cd4ml/scratch-{os.getpid()}"  # its own ref: processes sharing .cd4ml never clash
        head = (f"reset {ref}\ncommit {ref}\nmark :1\n"
                f"author {_ident(author)} <cd4ml@localhost> {when}\n"
                f"committer cd4ml <cd4ml@localhost> {when}\n").encode()
        text = message.encode()
        parts = [head, b"data %d\n" % len(text), text, b"\n"]
        if parent:
            parts.append(f"from {parent}\n".encode())
        for path, local in files.items():
            data = local if isinstance(local, bytes) else local.read_bytes()
            parts += [f"M 100644 inline {path}\n".encode(), b"data %d\n" % len(data), data, b"\n"]
        marks = self.path / f"marks-{os.getpid()}"
        argv = ["git", "fast-import", "--quiet", "--force", f"--export-marks={marks}"]
        out = subprocess.run(argv, input=b"".join(parts), capture_output=True, env=self._env,
                             check=False, timeout=300)
        if out.returncode != 0:
            raise CommandError(argv, out.returncode, out.stderr.decode(errors="replace"))
        return marks.read_text().split()[1]

    def push(self, commit: str, expected: str | None) -> Push:
        """Move the branch from ``expected`` (None: absent) to ``commit``, or report it stale.

        A refusal that retrying cannot cure (branch protection, a hook, no permission) and a
        failure of the network are StoreErrors; in the latter case the caller checks whether
        the commit landed before it calls the write lost.
        """
        ref = f"refs/heads/{self.branch}"
        out = self.git("push", "--porcelain", f"--force-with-lease={ref}:{expected or ''}",
                       REMOTE, f"{commit}:{ref}", check=False)
        text = out.stdout + out.stderr
        if out.returncode == 0:
            return Push.PUSHED
        verdict = next((line for line in out.stdout.splitlines() if line.startswith("!")), "")
        if any(s in verdict for s in _STALE):
            return Push.STALE
        if verdict:
            reason = verdict.split("]", 1)[-1].strip(" ()") or _tail(text)
            raise PushRefused(f"git store: {redact_url(self.url)} refused the push to branch "
                              f"{self.branch!r}: {reason}; let the workflow's token push there "
                              "(branch protection or rulesets) or choose another branch with "
                              "CD4ML_STORE_URL=git+<remote>#<branch>")
        raise PushFailed(f"git store: pushing to {redact_url(self.url)} failed: {_tail(text)}")


class PushRefused(StoreError):
    """The remote will not take commits on the branch (protection, hook, permission)."""


class PushFailed(StoreError):
    """The push did not complete (network, server error): whether it landed is not known yet."""


def _ident(name: str) -> str:
    return re.sub(r"[<>\n]", "", name) or "cd4ml"


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-3:]) if lines else "no output"
