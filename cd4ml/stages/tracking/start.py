"""``start_run``: a tracked run of its own, recorded with the code's git commit and the calling
script's hash."""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import TrackedRunError
from cd4ml.refs import find_spec
from cd4ml.stages.tracking.handle import ActiveRun, open_store, plain
from cd4ml.states import RunKind

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.store import Store

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _caller_file(depth: int = 2) -> Path | None:
    """The source file that called :func:`start_run`: the training code."""
    try:
        path = Path(sys._getframe(depth).f_code.co_filename)
    except ValueError:
        return None
    return path if path.is_file() else None


def start_run(pipeline: str | Path | Spec, store: Store | str | None = None, *,
              params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None) -> ActiveRun:
    """Start a tracked run of ``pipeline`` and return its handle; use it as a context manager
    so that the run is closed as succeeded, or as failed with the error when the block raises.

    ``pipeline`` is a name (model versions are numbered per name), a spec path or a Spec; a
    spec found for it supplies the task, target and spec hash. ``store`` is a Store, a URL, or
    None for the embedded store (``$CD4ML_STORE_URL``, else ``.cd4ml/cd4ml.db``).
    """
    from cd4ml.integrations.git import git_info

    spec = find_spec(pipeline)
    name = spec.name if spec else str(pipeline)
    if not _NAME.match(name):
        raise TrackedRunError(f"start_run: pipeline name {name!r} must be lower-case letters, digits, "
                            "'-' or '_' (it names images and services)")
    caller = _caller_file()
    opened, owns = open_store(store)
    try:
        # the code's repository is where the training script lives, wherever it is run from
        git = git_info(caller.parent if caller else spec.root if spec else None)
        run_tags = {**git.tags, **plain(dict(tags or {}))}
        for dead in opened.abandon_dead_runs(name):
            log.warning("run %s was left running by a process that is gone (%s): marked "
                        "abandoned", dead.id, dead.holder)
        record = opened.start_run(
            name, kind=RunKind.TRACKED, git_commit=git.commit, branch=git.branch, actor=git.actor,
            spec_hash=spec.spec_hash if spec else None,
            code_hash=hashlib.sha256(caller.read_bytes()).hexdigest() if caller else None,
            params=plain(dict(params or {})), tags=run_tags)
    except BaseException:
        if owns:
            opened.close()
        raise
    return ActiveRun(opened, record, spec=spec, owns_store=owns)
