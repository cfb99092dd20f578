"""Small builders several test modules share. Fixtures live in tests/conftest.py and, one module
per real service, in tests/fixtures/; plain functions that take arguments live here."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cd4ml.states import RuleKind
from cd4ml.store import ModelVersion, RuleOutcome, Store, journal, now

ROOT = Path(__file__).resolve().parent.parent


def wine_spec_dict() -> dict[str, Any]:
    """The wine example spec as a dict with its data and suite paths made absolute, so that a
    changed copy can be written anywhere."""
    import yaml

    raw = yaml.safe_load((ROOT / "pipelines" / "wine.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "pipelines" / raw["data"]["path"])
    raw["expectations"] = str(ROOT / "pipelines" / raw["expectations"])
    raw["allow_paths_outside_repository"] = True
    return raw


class Journaled(Store):
    """A SQLite store that keeps, like the git store, one journal record per write transaction
    (``records``, each written by ``actor``): the git store's records without git."""

    actor = "me"

    def __init__(self, url: str):
        super().__init__(url)
        journal.listen(self.engine)
        self.records: list[journal.Record] = []

    @contextmanager
    def tx(self) -> Iterator[Any]:
        with super().tx() as conn, journal.capture(conn) as found:
            yield conn
        if found.statements and hasattr(self, "records"):
            self.records.append(journal.Record.new("write", now(), self.actor, "0001_initial",
                                                   found.statements))


def git_as(repo: Path, *args: str, author: str, timeout: float = 60) -> str:
    """``git *args`` in ``repo`` as ``author`` (name and e-mail, unsigned commits); its stdout,
    or an AssertionError with its stderr."""
    import subprocess

    out = subprocess.run(
        ["git", "-c", f"user.name={author}", "-c", f"user.email={author}@example.com",
         "-c", "commit.gpgsign=false", *args],
        cwd=repo, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def entry_point_spec(name: str, entry_point: str, seed: int, **sections: Any) -> str:
    """YAML of a pipeline on ``data/wine.csv`` trained by ``entry_point`` (the tracking API's
    tests), gated at 0.8 on accuracy and f1_macro; ``sections`` add keys to a section of that
    (``data``, ``model``) or replace it (``gates``), or add sections."""
    import yaml

    raw: dict[str, Any] = {
        "name": name,
        "data": {"path": "data/wine.csv", "target": "target"},
        "model": {"task": "classification", "entry_point": entry_point, "seed": seed},
        "metrics": ["accuracy", "f1_macro"],
        "gates": [{"metric": "accuracy", "min": 0.8}, {"metric": "f1_macro", "min": 0.8}],
    }
    for key, value in sections.items():
        raw[key] = {**raw[key], **value} if isinstance(raw.get(key), dict) else value
    return yaml.safe_dump(raw, sort_keys=False)


@dataclasses.dataclass(frozen=True)
class SmallTree:
    """A fitted model and its artifact, as :func:`small_tree` leaves them."""

    estimator: Any
    frame: Any  # the spec's data
    features: list[str]
    directory: Path
    sha256: str
    signature: dict


def small_tree(spec: Any, root: Path) -> SmallTree:
    """A depth-3 decision tree fit on all of ``spec``'s data, its artifact saved under ``root``
    as train saves it (no metadata file yet: callers write the one they need)."""
    from sklearn.tree import DecisionTreeClassifier

    from cd4ml import artifacts
    from cd4ml.stages.data import feature_columns, load_frame

    frame = load_frame(spec.data)
    features = feature_columns(spec.data, frame)
    est = DecisionTreeClassifier(max_depth=3, random_state=0).fit(frame[features], frame["target"])
    directory, sha = artifacts.save(root, spec.name, est)
    signature = {"inputs": [{"name": f, "dtype": "float", "nullable": False} for f in features],
                 "target": "target", "classes": [int(c) for c in est.classes_], "frame": False}
    return SmallTree(est, frame, features, directory, sha, signature)


def model_record(version: int = 3) -> ModelVersion:
    """A wine model version record that is in no store: enough for rendering, which is pure."""
    return ModelVersion(id=7, pipeline="wine", version=version, run_id="r1", task="classification",
                        artifact_uri="/nowhere", sha256="ab" * 32, signature={}, stats={},
                        blessed=True, bad=False, created_at="2026-01-01T00:00:00Z")


def outcome(rule: str = "accuracy >= 0.85", passed: bool = True, **fields: Any) -> RuleOutcome:
    """A gate rule outcome as the gate stage records it (a ``min`` rule on accuracy unless
    ``fields`` say otherwise)."""
    values: dict[str, Any] = {
        "metric": "accuracy", "slice": None, "slice_value": None, "kind": RuleKind.MIN,
        "observed": 0.9, "threshold": 0.85, "baseline": None, "reason": "", "line": 0}
    return RuleOutcome(rule=rule, passed=passed, **{**values, **fields})


def train_version(spec: Any, store: Any, seed: int, bless: bool = True) -> ModelVersion:
    """Train and register a real model version of ``spec`` (each seed a different model), blessed
    by a passed gate unless ``bless`` is false."""
    from cd4ml.stages.train import train

    spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, seed=seed))
    run = store.start_run(spec.name)
    model = train(spec, store, run.id).model
    if bless:
        store.record_gate(run.id, model.id, True, [], None)
    return store.model_by_id(model.id)


@contextmanager
def build_env(tmp: Path, drop: tuple[str, ...] = ("GITHUB_",)) -> Iterator[dict[str, str]]:
    """The environment of ``cd4ml`` subprocesses that build images: this one without the
    variables ``drop`` starts, artifacts and home under ``tmp``, no colour, and the CA bundle
    of the TLS proxy this machine's pip goes through. The artifact and CA variables are set in
    this process too while the block runs, for the library calls made beside the subprocesses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(CD4ML_ARTIFACTS=str(tmp / "artifacts"), CD4ML_HOME=str(tmp / "home"), NO_COLOR="1")
    if os.environ.get("PIP_CERT") and not os.environ.get("CD4ML_BUILD_CA_BUNDLE"):
        # this machine's pip goes through a TLS proxy: the build's pip must trust it too
        env["CD4ML_BUILD_CA_BUNDLE"] = os.environ["PIP_CERT"]
    with pytest.MonkeyPatch.context() as mp:
        for k in ("CD4ML_ARTIFACTS", "CD4ML_BUILD_CA_BUNDLE"):
            if k in env:
                mp.setenv(k, env[k])
        yield env


def run_workers(procs: list, results: Any, timeout: float = 120) -> list:
    """Start the worker processes, take one outcome per worker off the ``results`` queue, then
    join them and check that each exited cleanly; returns the outcomes in arrival order."""
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return outcomes


#: stores made by cd4ml 0.1.0 (how: tests/data/store-0.1.0/README.md)
STORE_0_1_0 = ROOT / "tests" / "data" / "store-0.1.0"


def reflect_schema(url: str, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Everything the database says about its tables, as comparable plain data: columns (type,
    nullability, default), keys, foreign keys, indexes with their options, and sequences."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        insp = sa.inspect(engine)
        out: dict[str, Any] = {}
        for table in sorted(set(insp.get_table_names()) - set(exclude)):
            out[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("default"))
                            for c in insp.get_columns(table)],
                "primary_key": insp.get_pk_constraint(table),
                "foreign_keys": sorted((fk.get("name") or "", tuple(fk["constrained_columns"]),
                                        fk["referred_table"], tuple(fk["referred_columns"]))
                                       for fk in insp.get_foreign_keys(table)),
                "indexes": sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"]),
                                   sorted((k, str(v)) for k, v in ix.get("dialect_options", {}).items()))
                                  for ix in insp.get_indexes(table)),
                "unique": sorted((u["name"], tuple(u["column_names"]))
                                 for u in insp.get_unique_constraints(table)),
            }
        if engine.dialect.name == "postgresql":
            out["<sequences>"] = sorted(insp.get_sequence_names())
        return out
    finally:
        engine.dispose()


def table_columns(url: str) -> dict[str, list[str]]:
    """Each table's column names, in order."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        return {name: [c.name for c in table.columns] for name, table in meta.tables.items()}
    finally:
        engine.dispose()


def table_rows(url: str, exclude: tuple[str, ...] = (),
               keep: dict[str, list[str]] | None = None) -> dict[str, list[tuple]]:
    """Every row of every table, each table's rows sorted; with ``keep``, only those tables and
    columns (what a store had before migrations added tables and columns)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            out = {}
            for name, table in sorted(meta.tables.items()):
                # with ``keep``: a table a later migration created had no rows before it
                if name in exclude or (keep is not None and name not in keep):
                    continue
                cols = [table.c[c] for c in keep[name]] if keep is not None else [table]
                out[name] = sorted((tuple(r) for r in conn.execute(sa.select(*cols))), key=repr)
            return out
    finally:
        engine.dispose()



def start_reader(url: str) -> tuple[Any, list]:
    """A thread, started, that opens the store at ``url`` and lists its runs, and the list it
    puts the runs (or its error) in."""
    import threading

    from cd4ml.store import Store

    seen: list = []

    def read() -> None:
        try:
            with Store(url) as s:
                seen.append(s.runs())
        except Exception as e:  # noqa: BLE001 -- the caller asserts on it
            seen.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    return reader, seen


def serve_in_production(store: Any, spec: Any, model: Any) -> None:
    """Record ``model`` as serving healthy in the spec's last environment: what makes it the
    production baseline that relative gates compare with (nothing deployed: no baseline)."""
    env = spec.production.name
    dep = store.start_deployment(spec.name, env, model.id, f"img:{model.version}", "local",
                                 "deploy", "ana")
    store.finish_deployment(dep.id, "healthy")


def killed_lock_holder(url: str, name: str, holder: str, env: dict[str, str] | None = None) -> None:
    """Take lock ``name`` of the store at ``url`` in another process and kill -9 that process
    while it holds it: the lock stays behind as a killed deploy leaves it."""
    import signal
    import subprocess
    import sys

    code = ("import sys, time; from cd4ml.store import Store; s = Store(sys.argv[1]); "
            "lock = s.lock(sys.argv[2], sys.argv[3]); lock.__enter__(); "
            "print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, url, name, holder], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def stand_in_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str) -> tuple[Path, Path]:
    """Python ``code`` installed as the ``kubectl`` cd4ml runs (no cluster can run here): it
    finds its call log and its state file through FAKE_KUBECTL_LOG / FAKE_KUBECTL_STATE, whose
    paths are returned."""
    import stat
    import sys

    exe = tmp_path / "kubectl"
    exe.write_text(f"#!{sys.executable}\n{code}")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log, state = tmp_path / "kubectl.log", tmp_path / "state.json"
    monkeypatch.setenv("KUBECTL", str(exe))
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(log))
    monkeypatch.setenv("FAKE_KUBECTL_STATE", str(state))
    return log, state
