"""The git store: the lineage store kept on a branch of a git repository, for CI with no server.

``CD4ML_STORE_URL=git+<remote>#<branch>``: ``<remote>`` is a remote of the working repository
(``git+origin``) or any URL git accepts (``git+https://github.com/o/r.git``,
``git+file:///srv/r.git``); ``<branch>`` defaults to ``cd4ml/state``.

How it works:

- **Records.** Each write transaction of the store becomes one commit on the branch adding one
  JSON record file (see journal.py); nothing on the branch is ever rewritten, and ``git log`` of
  the branch reads as the audit trail (``<op>: <what>``, by the CI actor, from the CI run).
- **Reads** come from a SQLite cache under ``.cd4ml/git-store/`` that is the replay of the
  branch's records in commit order; opening the store fetches the branch and replays only the
  commits the cache has not seen.
- **Writes** run on the cache inside a SQLite transaction, become a commit on the tip the cache
  stands on, and are pushed with compare-and-swap. Only a pushed write is committed to the cache.
  A stale push fetches and replays the newcomers, then runs the write's statements again: the
  same effects mean the same outcome, so the commit is rebuilt on the new tip and pushed again;
  a unique-key clash is raised as on any database (a model version or a lock taken meanwhile:
  the Store's own loop takes the next version, or waits for the lock; a clash the method does
  not handle itself re-runs it, so that its own checks see what others wrote); other
  differences re-run the whole Store method on the fresh state. This holds for every public
  method of the Store, the mixins' (labels, monitoring, release steps) included.
- **Model artifacts** go on the branch beside the record that names them
  (``artifacts/<pipeline>/v<version>/``), up to ``CD4ML_GIT_STORE_ARTIFACT_MB`` (50); a later
  run on a fresh runner gets the production model from there, and its sha256 is checked on load.
- **Bad records** (not JSON, sha256 mismatch, statements that do not apply) are named and skipped
  (``CD4ML_GIT_STORE_BAD_RECORDS=skip``, the default) or refused (``=refuse``); edits of an
  existing record are ignored and named: a record counts as the commit that added it wrote it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cd4ml.errors import StoreError
from cd4ml.integrations.gitstate import Push, PushFailed, StateRepo, redact_url
from cd4ml.store import ModelVersion, Store, journal, metadata, now
from cd4ml.store.journal import Record, RecordError

log = logging.getLogger("cd4ml.store.git")

DEFAULT_BRANCH = "cd4ml/state"
_MARKER = "cd4ml_git_replayed"  # the cache's own bookkeeping: the branch commit it stands on
_PUSH_TRIES = 100
#: tables whose integer ``id`` a caller reads back after an insert
_ID_TABLES = frozenset(t.name for t in metadata.tables.values()
                       if "id" in t.c and isinstance(t.c.id.type, sa.Integer))


class _PerThread(threading.local):
    """What the write under way in this thread is: its Store method (names the record), a
    summary for the commit message, whether it fetched already, files to commit with it."""

    def __init__(self) -> None:
        self.op: str | None = None
        self.summary: str | None = None
        self.fresh = False
        self.attach: dict[str, bytes | Path] = {}


class _Moved(StoreError):
    """The branch moved under a write in a way that changes its outcome: run the write again."""


def parse_url(url: str, cwd: Path | None = None) -> tuple[str, str]:
    """``git+<remote>#<branch>`` -> (URL git can fetch, branch)."""
    from cd4ml.integrations.git import remote_url

    remote, _, branch = url.removeprefix("git+").partition("#")
    branch = branch or DEFAULT_BRANCH
    if not remote or re.search(r"[\s~^:?*\[\\]|\.\.|//", branch):
        raise StoreError(f"CD4ML_STORE_URL: {redact_url(url)!r} is not git+<remote>#<branch>; "
                         "use e.g. git+origin or git+https://github.com/o/r.git#cd4ml/state")
    if re.fullmatch(r"[\w.-]+", remote) and not Path(remote).exists():
        found = remote_url(remote, cwd)
        if not found:
            raise StoreError(f"CD4ML_STORE_URL: this directory's repository has no git remote "
                             f"{remote!r}; run from the repository's checkout or give its URL, "
                             "e.g. git+https://github.com/o/r.git")
        remote = found
    if "://" not in remote and not re.match(r"[\w.-]+@[\w.-]+:", remote):
        remote = str(Path(remote).resolve())  # a local path, whatever the directory of each git call
    return remote, branch


class GitStore(Store):
    """A Store whose records live on a git branch; its SQLite file is only a cache."""

    #: a variant whose cache may hold what the branch does not keeps it in a directory of its own
    cache_suffix = ""

    @classmethod
    def variant(cls, url: str) -> type[GitStore]:
        """The class that opens ``url``: ``?writes=local`` one that never pushes (gitlocal.py)."""
        from cd4ml.store.gitlocal import LocalWritesGitStore, writes_locally

        return LocalWritesGitStore if writes_locally(url) else cls

    def __init__(self, url: str | None = None):
        from cd4ml.paths import home
        from cd4ml.store import default_url

        url = url or default_url()
        self.git_url = url
        remote, branch = parse_url(url)
        key = hashlib.sha256(f"{remote}#{branch}".encode()).hexdigest()[:12]
        self.dir = home() / "git-store" / (key + self.cache_suffix)
        self.repo = StateRepo(remote, branch, self.dir / "repo.git", os.environ.get("GITHUB_TOKEN"))
        self.actor = os.environ.get("GITHUB_ACTOR") or os.environ.get("USER") or None
        self.policy = os.environ.get("CD4ML_GIT_STORE_BAD_RECORDS", "skip")
        if self.policy not in ("skip", "refuse"):
            raise StoreError(f"CD4ML_GIT_STORE_BAD_RECORDS={self.policy!r}: use skip or refuse")
        self._journaled = False  # migrations and replays change the cache only
        self._t = _PerThread()  # a run's heartbeat writes from its own thread
        self._synced = 0.0
        #: a long-lived process (the web view, a monitor) fetches again on a read after this long
        self.refresh = 10.0
        super().__init__(f"sqlite:///{self.dir / 'cache.db'}")
        journal.listen(self.engine)
        with self._cache() as conn:
            conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {_MARKER} (tip TEXT)")
            if conn.exec_driver_sql(f"SELECT count(*) FROM {_MARKER}").scalar() == 0:
                conn.exec_driver_sql(f"INSERT INTO {_MARKER} (tip) VALUES (NULL)")
        self._journaled = True
        try:
            self.sync()
        except StoreError as e:
            with self._cache() as conn:
                stands_on = _marker(conn)
            if stands_on is None:
                raise
            _warn(f"{e}; reading the cache of commit {stands_on[:12]}")

    def __repr__(self) -> str:
        return f"GitStore({redact_url(self.git_url)!r})"

    # ---- the cache

    @contextmanager
    def _cache(self) -> Iterator[sa.Connection]:
        """A write transaction on the cache alone (``BEGIN IMMEDIATE``: one process at a time)."""
        with super().tx() as conn:
            yield conn

    def sync(self) -> str | None:
        """Fetch the branch and replay the commits the cache has not seen; the tip."""
        tip = self.repo.fetch()
        with self._cache() as conn:
            self._catch_up(conn, tip)
        self._synced = time.monotonic()
        return tip

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read of the cache, brought up to date first if it was last more than a few seconds
        ago (a command reads what the branch held when it started; a server keeps up)."""
        self._keep_up()
        with super().read() as conn:
            yield conn

    def fingerprint(self) -> str:
        """The cache's change counter, once the cache has caught up (see :meth:`read`)."""
        self._keep_up()
        return Store.fingerprint(self)

    def _keep_up(self) -> None:
        if self._journaled and time.monotonic() - self._synced > self.refresh:
            try:
                self.sync()
            except StoreError as e:
                self._synced = time.monotonic()
                _warn(f"{e}; reading the cache as it is")

    def _catch_up(self, conn: sa.Connection, tip: str | None) -> None:
        done = _marker(conn)
        if done == tip:
            return
        if done is not None and (tip is None or not self.repo.is_ancestor(done, tip)):
            _warn(f"git store: branch {self.repo.branch!r} was deleted or rewritten (it no longer "
                  f"holds commit {done[:12]}); rebuilding the cache from what it holds now")
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
            done = None
        if tip is not None:
            self._replay(conn, done, tip)
        _set_marker(conn, tip)

    def _replay(self, conn: sa.Connection, done: str | None, tip: str) -> None:
        records = []
        for change in self.repo.changes(done, tip):
            if not change.path.startswith("records/"):
                continue  # artifacts, or a README someone added: not records
            if change.status == "A":
                records.append(change)
            else:
                _warn(f"git store: commit {change.commit[:12]} changed {change.path} after it "
                      "was written; records are append-only, so the change is ignored")
        log.info("git store: replaying %d record(s) of %s..%s", len(records),
                 (done or "the start")[:12], tip[:12])
        for change, data in zip(records, self.repo.blobs([c.blob for c in records]), strict=True):
            try:
                record = Record.from_bytes(data)
                journal.replay(conn, record.statements, atomic=True)
            except (RecordError, sa.exc.DBAPIError) as e:
                what = f"git store: record {change.path} (commit {change.commit[:12]})"
                if self.policy == "refuse":
                    raise StoreError(f"{what}: {_first(e)}; revert that commit on the branch, or set "
                                     "CD4ML_GIT_STORE_BAD_RECORDS=skip to read past it") from None
                _warn(f"{what} skipped: {_first(e)}")

    # ---- writes

    @contextmanager
    def tx(self) -> Iterator[sa.Connection]:
        """A write: run on the cache, committed there only once its commit is on the branch."""
        if not self._journaled:
            with super().tx() as conn:
                yield conn
            return
        # optimistic: the write runs on the cache as it is; a stale one is caught by the push
        self._t.fresh = False
        with ExitStack() as stack:
            conn = stack.enter_context(self.engine.connect())
            outer = conn.begin()
            try:
                mine = conn.begin_nested()
                with journal.capture(conn) as found:
                    yield conn
                if found.statements:
                    self._publish(conn, mine, found)
                outer.commit()
            except (sa.exc.IntegrityError, _Moved):
                # keep the records of others this write caught up with, drop only its own
                nested = conn.get_nested_transaction()
                if nested is not None and nested.is_active:
                    nested.rollback()
                outer.commit()
                if not self._t.fresh:  # the clash was with the cache: let the retry see the branch
                    self.sync()
                raise
            except sa.exc.OperationalError as e:
                outer.rollback()
                raise StoreError(f"git store cache {self.dir}: {_first(e)}; delete that "
                                 "directory to rebuild it from the branch") from None
            except BaseException:
                if outer.is_active:
                    outer.rollback()
                raise

    def _publish(self, conn: sa.Connection, mine: sa.NestedTransaction,
                 found: journal.Capture) -> None:
        from cd4ml.store.migrations import applied

        schema = (applied(conn) or ["?"])[-1]
        record = Record.new(self._t.op or "write", now(), self.actor, schema, found.statements)
        files: dict[str, bytes | Path] = {record.path: record.to_bytes(), **self._t.attach}
        message = f"{record.op}: {self._t.summary or record.id}\n\nrecord {record.path}\n" + (
            f"ci run {record.ci_run}\n" if record.ci_run else "")
        for attempt in range(_PUSH_TRIES):
            tip = _marker(conn)
            commit = self.repo.commit(tip, files, message, self.actor or "cd4ml")
            if self._push(commit, tip, record) is Push.PUSHED:
                mine.commit()
                _set_marker(conn, commit)
                return
            # someone wrote first: take their records, then see whether ours still holds
            mine.rollback()
            self._catch_up(conn, self.repo.fetch())
            self._t.fresh = True
            mine = conn.begin_nested()
            effects = journal.replay(conn, record.statements)  # a unique clash raises here
            if not _same(found, effects):
                raise _Moved(f"git store: the branch moved under {record.op}; run it again")
            time.sleep(min(0.02 * attempt, 0.5) * (0.5 + os.getpid() % 7 / 7))
        raise StoreError(f"git store: {record.op} lost the race for branch {self.repo.branch!r} "
                         f"{_PUSH_TRIES} times; too many concurrent writers, retry the job")

    def _push(self, commit: str, tip: str | None, record: Record) -> Push:
        try:
            return self.repo.push(commit, tip)
        except PushFailed as e:
            # the connection died: the push may or may not have moved the branch
            try:
                landed = self.repo.fetch()
            except StoreError:
                raise StoreError(f"{e}; record {record.path} was not confirmed written: run "
                                 f"'git log {self.repo.branch}' on the remote to check") from None
            if landed is not None and self.repo.is_ancestor(commit, landed):
                return Push.PUSHED
            raise StoreError(f"{e}; record {record.path} ({record.op}) was not written") from None

    # ---- artifacts

    def set_artifact_uri(self, model_id: int, uri: str) -> ModelVersion:
        """Also put the model's files on the branch, so that a fresh runner can load it."""
        model = self.model_by_id(model_id)
        limit = float(os.environ.get("CD4ML_GIT_STORE_ARTIFACT_MB", "50")) * 1e6
        files = {f"artifacts/{model.pipeline}/v{model.version}/{p.name}": p
                 for p in sorted(Path(uri).glob("*")) if p.is_file()}
        size = sum(p.stat().st_size for p in files.values())
        if size > limit:
            _warn(f"git store: {model.ref}'s artifact is {size / 1e6:.1f} MB, over "
                  f"CD4ML_GIT_STORE_ARTIFACT_MB={limit / 1e6:g}: it stays on this machine only; "
                  "raise the limit to keep it on the branch")
            files = {}
        self._t.attach = dict(files)
        try:
            return Store.set_artifact_uri(self, model_id, uri)
        finally:
            self._t.attach = {}

    def _local(self, model: ModelVersion) -> ModelVersion:
        """``model`` with an artifact_uri on this machine, fetched from the branch if need be."""
        if (Path(model.artifact_uri) / "model.pkl").exists():
            return model
        from cd4ml import artifacts
        from cd4ml.paths import artifacts_root

        target = artifacts_root() / model.pipeline / f"v{model.version}"
        if not (target / artifacts.MODEL_FILE).exists():
            with self.read() as conn:
                tip = _marker(conn)
            where = f"artifacts/{model.pipeline}/v{model.version}"
            blobs = {n: self.repo.read(tip, f"{where}/{n}") if tip else None
                     for n in (artifacts.MODEL_FILE, artifacts.META_FILE)}
            if any(b is None for b in blobs.values()):
                return model  # loading it fails as it would on any store: named, sha256-checked
            target.mkdir(parents=True, exist_ok=True)
            for name, data in blobs.items():
                _atomic_write(target / name, data)  # type: ignore[arg-type]
        return replace(model, artifact_uri=str(target))

    # ---- locks

    @contextmanager
    def lock(self, name: str, holder: str, timeout: float = 600.0, ttl: float = 900.0,
             **tell: Any) -> Iterator[None]:
        """The Store's lock, taken and released by commits on the branch (so across machines);
        its heartbeat and a take-over of a dead holder's are commits too."""
        deadline = time.monotonic() + timeout
        with ExitStack() as stack:
            stack.callback(self._name_next, None, None)  # runs last: after the release
            while True:
                self._t.op, self._t.summary = "lock", f"{name} for {holder}"
                try:
                    stack.enter_context(Store.lock(self, name, holder,
                                                   max(0.0, deadline - time.monotonic()), ttl,
                                                   **tell))
                    break
                except _Moved:
                    continue
                finally:
                    self._t.op = self._t.summary = None
            stack.callback(self._name_next, "unlock", f"{name} for {holder}")
            yield

    def _name_next(self, op: str | None, summary: str | None) -> None:
        self._t.op, self._t.summary = op, summary


def _journaled(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """Name the record after the outermost Store method, re-run it when the branch moved under
    it, and give every model version it returns an artifact path on this machine."""

    @functools.wraps(method)
    def wrapper(self: GitStore, *args: Any, **kwargs: Any) -> Any:
        outer = self._t.op is None
        if outer:
            self._t.op, self._t.summary = name, _summarise(args, kwargs)
        try:
            for _ in range(_PUSH_TRIES):
                try:
                    result = method(self, *args, **kwargs)
                    break
                except _Moved:
                    continue
                except sa.exc.IntegrityError:
                    if not self._t.fresh:
                        raise
                    # a clash with what others wrote meanwhile that the method does not handle
                    # itself (labels two monitors both recorded): its checks see them this time
                    continue
            else:
                raise StoreError(f"git store: {name} kept losing races; retry the job")
        finally:
            if outer:
                self._t.op = self._t.summary = None
        return self._local(result) if isinstance(result, ModelVersion) else result

    return wrapper


_NOT_WRAPPED = {"close", "tx", "read", "migrate", "applied_migrations", "lock"}
# every public method of the Store, whichever class of it defines it (the mixins' writes of
# labels, monitoring results, baselines and release steps too): each write is named and retried
_METHODS = {name for cls in Store.__mro__ for name, fn in vars(cls).items()
            if inspect.isfunction(fn) and not name.startswith("_") and name not in _NOT_WRAPPED}
for _name in sorted(_METHODS):
    setattr(GitStore, _name, _journaled(_name, getattr(GitStore, _name)))


def _summarise(args: tuple, kwargs: dict) -> str:
    shown = [str(a) for a in args[:3] if isinstance(a, (str, int)) and len(str(a)) <= 40]
    shown += [f"{k}={v}" for k, v in kwargs.items()
              if k in ("status", "environment", "holder") and isinstance(v, str)]
    return " ".join(shown)


def _same(found: journal.Capture, effects: list[journal.Effect]) -> bool:
    for statement, before, after in zip(found.statements, found.effects, effects, strict=True):
        if before.rowcount != after.rowcount:
            return False
        table = statement.sql.split()[2] if statement.sql.upper().startswith("INSERT") else ""
        if table in _ID_TABLES and before.lastrowid != after.lastrowid:
            return False
    return True


def _marker(conn: sa.Connection) -> str | None:
    return conn.exec_driver_sql(f"SELECT tip FROM {_MARKER}").scalar()


def _set_marker(conn: sa.Connection, tip: str | None) -> None:
    conn.exec_driver_sql(f"UPDATE {_MARKER} SET tip = ?", (tip,))


def _warn(message: str) -> None:
    from cd4ml.events import StageWarning, emit

    log.warning("%s", message)
    emit(StageWarning("store", message))


def _first(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
