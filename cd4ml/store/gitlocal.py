"""The git store read, never written: ``CD4ML_STORE_URL=git+<remote>?writes=local``.

A pull request's job must see what main recorded (the production model to compare with, the
metric history of its comment, the run cache) and must not add anything a deploy could pick up:
its code is not yet reviewed, and a record it pushed (a blessed model, a run the cache would
reuse) would be trusted by the next run of main. So this variant fetches and replays the branch
like the git store, and keeps every write of its own in its local cache: the records, model
versions and reports of the job are there for the job's later steps (``cd4ml report``) and end
with the runner. Nothing is pushed, so the job needs only ``contents: read``.

The cache lives apart from the writing store's (a ``-local`` directory). Once it holds a write
of its own it stops fetching: a replay of newer branch records on top of local ones could clash
(two version 3s), and a job reads the branch as it was when it started anyway. Delete the
directory to read the branch afresh.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from cd4ml.store import ModelVersion, Store
from cd4ml.store.gitstore import GitStore, _marker

log = logging.getLogger("cd4ml.store.git")

#: the URL option, after the remote (``git+origin?writes=local#cd4ml/state``) or at the end
OPTION = re.compile(r"\?writes=local(?=#|$)")
_PINNED = "local-writes"  # a file in the cache directory: the cache holds writes of its own


def writes_locally(url: str) -> bool:
    """Whether ``url`` asks for the git store that keeps its writes on this machine."""
    return OPTION.search(url) is not None


class LocalWritesGitStore(GitStore):
    """The git store's records, read; this process's writes kept in its local cache only."""

    cache_suffix = "-local"

    def __init__(self, url: str | None = None):
        from cd4ml.store import default_url

        url = url or default_url()
        super().__init__(OPTION.sub("", url))
        self.git_url = url

    def sync(self) -> str | None:
        """Fetch and replay the branch, unless the cache holds writes of its own (then it reads
        the branch as it was when the first was made)."""
        if not (self.dir / _PINNED).exists():
            return super().sync()
        with Store.read(self) as conn:
            tip = _marker(conn)
        log.info("git store (writes=local): reading branch %r as of %s, with this machine's "
                 "own records", self.repo.branch, (tip or "its start")[:12])
        self._synced = time.monotonic()
        return tip

    @contextmanager
    def tx(self) -> Iterator[sa.Connection]:
        """A write to the cache alone; from now on the cache is not replayed on (see sync)."""
        if self._journaled:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / _PINNED).touch()  # before the write: a crash never leaves it unmarked
        with Store.tx(self) as conn:
            yield conn

    def set_artifact_uri(self, model_id: int, uri: str) -> ModelVersion:
        """The artifact stays where it is: nothing goes on the branch."""
        return Store.set_artifact_uri(self, model_id, uri)
