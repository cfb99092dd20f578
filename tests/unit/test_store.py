"""The store on SQLite (a file, or in memory): migrations, record/query round trips, the
production baseline, the one-current-deployment rule and the locks."""

from __future__ import annotations

import math
import multiprocessing
import re
import threading
import time

import pytest
import sqlalchemy as sa

from cd4ml import store as store_mod
from cd4ml.errors import StoreError
from cd4ml.states import (
    ApprovalSource,
    DeployAction,
    DeploymentStatus,
    InfraStatus,
    MetricScope,
    RunKind,
    RunStatus,
)
from cd4ml.store import Migration, Store, default_url, migrations, redact
from tests.helpers import outcome


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def store(db_url):
    with Store(db_url) as s:
        yield s


def _model(store: Store, pipeline: str = "wine", **run_fields):
    run = store.start_run(pipeline, **run_fields)
    return store.register_model(pipeline, run.id, "classification", f"/artifacts/{run.id}",
                                "a" * 64, {"inputs": [{"name": "x", "dtype": "float"}]},
                                {"x": {"kind": "numeric"}})


def _bookkeeping(url: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                "SELECT name, applied_at FROM schema_migrations ORDER BY applied_at"))]
    finally:
        engine.dispose()


ALL = [m.name for m in migrations.MIGRATIONS]


# ------------------------------------------------------------------------------- migrations


def test_fresh_store_is_migrated_with_bookkeeping(db_url):
    with Store(db_url) as s:
        assert s.applied_migrations() == ALL
    rows = _bookkeeping(db_url)
    assert [name for name, _ in rows] == ALL
    assert all(applied.endswith("Z") for _, applied in rows)


def test_reopening_does_not_reapply(db_url, monkeypatch):
    Store(db_url).close()
    before = _bookkeeping(db_url)
    calls = []

    def extra(conn):
        calls.append(1)
        conn.execute(sa.text("CREATE TABLE extra (x INTEGER)"))

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, Migration("9999_extra", extra)))
    with Store(db_url) as s:
        assert s.applied_migrations() == [*ALL, "9999_extra"]
    with Store(db_url) as s:  # a third opening: nothing left to apply
        assert s.migrate() == []
    assert calls == [1]
    after = _bookkeeping(db_url)
    assert after[: len(before)] == before  # the old bookkeeping rows are untouched


def test_migrations_are_applied_by_name_not_position(db_url, monkeypatch):
    Store(db_url).close()
    calls = []
    # a migration placed before one already applied is still applied, exactly once
    first = Migration("0000_before", lambda conn: calls.append("before"))
    monkeypatch.setattr(migrations, "MIGRATIONS", (first, *migrations.MIGRATIONS))
    with Store(db_url) as s:
        assert sorted(s.applied_migrations()) == sorted(["0000_before", *ALL])
        assert s.migrate() == []
    assert calls == ["before"]


def test_failed_migration_leaves_no_bookkeeping_row(db_url, monkeypatch):
    Store(db_url).close()

    def broken(conn):
        conn.execute(sa.text("CREATE TABLE half (x INTEGER)"))
        conn.execute(sa.text("SELECT * FROM no_such_table"))

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, Migration("9999_broken", broken)))
    with pytest.raises(StoreError, match="9999_broken: no such table: no_such_table"):
        Store(db_url)
    # the migration and its row share one transaction: neither the table nor the row is there
    assert [name for name, _ in _bookkeeping(db_url)] == ALL
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert "half" not in sa.inspect(conn).get_table_names()
    engine.dispose()


def _open(url: str, barrier, results) -> None:
    try:
        barrier.wait(timeout=30)
        with Store(url) as s:
            results.put(s.applied_migrations())
    except Exception as e:  # noqa: BLE001 -- sent to the parent, which asserts on it
        results.put(repr(e))


def test_two_processes_open_a_fresh_store_at_once(db_url):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(db_url, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert got == [ALL] * 2
    assert [name for name, _ in _bookkeeping(db_url)] == ALL


def test_in_memory_store_keeps_its_data_and_is_private():
    with Store("sqlite://") as a, Store("sqlite://") as b:
        run = a.start_run("wine")
        assert a.run(run.id).pipeline == "wine"
        assert a.applied_migrations() == ALL
        assert b.runs() == []


def test_bad_url_and_missing_driver_are_store_errors():
    with pytest.raises(StoreError, match="not a database URL"):
        Store("not a url")
    with pytest.raises(StoreError, match="no driver"):
        Store("postgresql+nosuchdriver://u@h/db")
    # a port that is not a number is refused the same way, and the password is never shown
    with pytest.raises(StoreError, match="not a database URL") as bad_port:
        Store("postgresql+psycopg://u:secret@h:notaport/db")
    assert "secret" not in str(bad_port.value)


def test_default_url_and_redaction(monkeypatch, tmp_path):
    monkeypatch.setenv("CD4ML_HOME", str(tmp_path / "home"))
    assert default_url() == f"sqlite:///{tmp_path / 'home' / 'cd4ml.db'}"
    monkeypatch.setenv("CD4ML_STORE_URL", "postgresql+psycopg://u:secret@h/db")
    assert default_url() == "postgresql+psycopg://u:secret@h/db"
    assert "secret" not in redact(default_url())
    assert redact("::::") in ("<unparseable store URL>", "::::")


def test_unreachable_store_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the store's directory"):
        Store(f"sqlite:///{blocker / 'sub' / 'x.db'}")


# ------------------------------------------------------------------------------- round trips


def test_runs_round_trip(store):
    run = store.start_run("wine", git_commit="c" * 40, branch="main", actor="ana", spec_hash="s",
                          code_hash="k", data_hash="d", cache_key="ck", params={"n": 3},
                          tags={"ci": True})
    assert run.status == "running" and run.ended_at is None
    assert (run.git_commit, run.branch, run.actor, run.params, run.tags) == \
        ("c" * 40, "main", "ana", {"n": 3}, {"ci": True})
    done = store.finish_run(run.id, "gate_failed", error="accuracy too low")
    assert done.status == "gate_failed" and done.error == "accuracy too low" and done.ended_at
    assert done.ended_at >= done.started_at
    assert store.run(run.id[:6]) == done  # a unique prefix is enough
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.run("nope")


def test_runs_listing_orders_filters_and_limits(store):
    ids = [store.start_run("wine" if i % 2 else "diabetes").id for i in range(5)]
    listed = store.runs()
    assert [r.id for r in listed] == ids[::-1]  # newest first
    assert {r.pipeline for r in store.runs("wine")} == {"wine"}
    assert len(store.runs("wine")) == 2
    assert len(store.runs(limit=3)) == 3


def test_ambiguous_run_prefix_is_refused(store):
    ids = [store.start_run("wine").id for _ in range(40)]
    shared = next((a[:1] for a in ids for b in ids if a != b and a[:1] == b[:1]), None)
    assert shared is not None
    with pytest.raises(StoreError):
        store.run(shared)


def test_dataset_round_trip_and_idempotence(store):
    d = store.record_dataset("h" * 64, "data/wine.csv", "csv", 178, ["a", "b"])
    again = store.record_dataset("h" * 64, "elsewhere.csv", "csv", 1, [])
    assert again == d and d.rows == 178 and d.columns == ["a", "b"]
    assert store.dataset("h" * 64) == d
    assert store.dataset("missing") is None


def test_validation_round_trip(store):
    run = store.start_run("wine")
    exp = [{"expectation": "expect_column_values_to_not_be_null", "column": "x", "success": False,
            "observed": float("nan")}]
    drift = [{"feature": "x", "method": "psi", "statistic": 0.31, "threshold": 0.2, "drifted": True}]
    v = store.record_validation(run.id, "wine", False, exp, drift, baseline_version=3)
    assert store.validation(run.id) == v
    assert v.success is False and v.baseline_version == 3 and v.drift == drift
    assert v.expectations[0]["observed"] == "nan"  # NaN is not JSON: kept as text
    assert store.validation(store.start_run("wine").id) is None


def test_metrics_round_trip_and_nan_is_null(store):
    run = store.start_run("wine")
    store.record_metrics(run.id, [
        {"name": "accuracy", "value": 0.9},
        {"name": "roc_auc", "value": float("nan")},
        {"name": "rmse", "value": float("inf")},
        {"name": "f1_macro", "value": None},
        {"name": "accuracy", "value": 0.8, "scope": "production", "model_version": 2},
        {"name": "accuracy", "value": 1, "slice": "alcohol_level", "slice_value": "high", "step": 4},
    ])
    store.record_metrics(run.id, [])
    got = store.metrics(run.id)
    assert [(m.name, m.value) for m in got] == [
        ("accuracy", 0.9), ("roc_auc", None), ("rmse", None), ("f1_macro", None),
        ("accuracy", 0.8), ("accuracy", 1.0)]
    assert got[0].scope == "candidate" and got[0].slice == "" and got[0].slice_value == ""
    assert (got[4].scope, got[4].model_version) == ("production", 2)
    assert (got[5].slice, got[5].slice_value, got[5].step) == ("alcohol_level", "high", 4)
    with store.read() as conn:
        raw = conn.execute(sa.text("SELECT value FROM metrics WHERE name = 'roc_auc'")).scalar()
    assert raw is None  # NULL in the database, not the text 'NaN'


def test_params_with_nan_survive_as_text(store):
    run = store.start_run("wine", params={"alpha": float("nan"), "nested": [1, {"b": math.inf}]})
    assert store.run(run.id).params == {"alpha": "nan", "nested": [1, {"b": "inf"}]}


def test_model_versions_round_trip(store):
    first, second = _model(store), _model(store)
    other = _model(store, "diabetes")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.ref == "wine:1" and not first.blessed and not first.bad
    assert store.model("wine", 2) == second
    assert store.model_by_id(other.id) == other
    assert store.model_for_run(first.run_id) == first
    assert store.model_for_run(store.start_run("wine").id) is None
    assert [m.version for m in store.models("wine")] == [2, 1]
    assert len(store.models()) == 3
    with pytest.raises(StoreError, match=r"no model version wine:9"):
        store.model("wine", 9)
    with pytest.raises(StoreError):
        store.model_by_id(12345)
    assert first.signature["inputs"][0]["name"] == "x" and first.stats["x"]["kind"] == "numeric"


def test_gate_round_trip_blesses_and_records_override(store):
    m1, m2, m3 = _model(store), _model(store), _model(store)
    rules = [outcome("accuracy >= 0.9", passed=False, line=12)]
    g1 = store.record_gate(m1.run_id, m1.id, passed=True, rules=rules, baseline_version=None)
    assert g1.blessed and not g1.overridden and store.model_by_id(m1.id).blessed
    g2 = store.record_gate(m2.run_id, m2.id, passed=False, rules=rules, baseline_version=1)
    assert not g2.blessed and not store.model_by_id(m2.id).blessed
    g3 = store.record_gate(m3.run_id, m3.id, passed=False, rules=rules, baseline_version=1,
                           override_by="ana", override_reason="known label noise")
    assert g3.overridden and g3.blessed and (g3.override_by, g3.override_reason) == ("ana", "known label noise")
    assert store.model_by_id(m3.id).blessed
    assert store.gate(m3.run_id) == g3 and g3.rules == tuple(rules)
    # an override of a gate that passed is no override at all
    g4 = store.record_gate(m1.run_id, m1.id, passed=True, rules=[], baseline_version=None,
                           override_by="ana", override_reason="why not")
    assert not g4.overridden and g4.override_by is None
    assert store.gate(m1.run_id) == g4  # the newest decision wins
    assert store.gate(store.start_run("wine").id) is None


def test_latest_model_and_flags(store):
    m1, m2, m3 = _model(store), _model(store), _model(store)
    for m in (m1, m2):
        store.record_gate(m.run_id, m.id, passed=True, rules=[], baseline_version=None)
    assert store.latest_model("wine") == store.model_by_id(m3.id)
    assert store.latest_model("wine", blessed=True).version == 2
    assert store.latest_model("wine", blessed=False).version == 3
    bad = store.set_model_flags(m2.id, bad=True)
    assert bad.bad and bad.blessed
    assert store.latest_model("wine", blessed=True).version == 1  # a bad version is no baseline
    assert store.latest_model("nothing") is None


def test_find_cached_run(store):
    model = _model(store, cache_key="k1")
    store.finish_run(model.run_id, "succeeded")
    store.start_run("wine", cache_key="k1")  # still running, and no model: not a cache hit
    failed = _model(store, cache_key="k1")
    store.finish_run(failed.run_id, "failed", error="boom")
    assert store.find_cached_run("wine", "k1").id == model.run_id
    reuse = store.start_run("wine", cache_key="k1")
    store.finish_run(reuse.id, "succeeded", reused_from=model.run_id)
    assert store.find_cached_run("wine", "k1").id == model.run_id
    assert store.find_cached_run("wine", "k2") is None
    assert store.find_cached_run("diabetes", "k1") is None


# ------------------------------------------------------------------------------- baseline


def test_production_model_is_only_what_serves_in_the_last_environment(store):
    assert store.production_model("wine", "production") is None
    m1, m2, m3 = _model(store), _model(store), _model(store)
    for m in (m1, m2):
        store.record_gate(m.run_id, m.id, passed=True, rules=[], baseline_version=None)
    # blessed but deployed nowhere: no baseline (never the newest blessed: a slow slide)
    assert store.production_model("wine", "production") is None
    assert store.production_model("wine", None) is None
    dep = store.start_deployment("wine", "production", m1.id, "img:1", "local", "deploy", "ana")
    store.finish_deployment(dep.id, "healthy")
    assert store.production_model("wine", "production").version == 1
    assert store.production_model("wine", "staging") is None
    # taken down: nothing serves, no baseline
    down = store.start_deployment("wine", "production", m1.id, "img:1", "local", "down", "ana")
    store.finish_deployment(down.id, "down")
    assert store.production_model("wine", "production") is None
    assert store.current_deployment("wine", "production") is None
    assert m3.version == 3


# ------------------------------------------------------------------------------- images, deployments


def test_images_round_trip(store):
    m = _model(store)
    img = store.record_image(m.id, "sha256:abc", "cd4ml/wine:1", 123_456)
    assert (img.infra_status, img.infra_report, img.digest) == ("pending", {}, None)
    done = store.update_image(img.id, infra_status="passed", infra_report={"p99_ms": 12.5},
                              digest="sha256:def", pushed_at=store_mod.now())
    assert done.infra_status == "passed" and done.infra_report == {"p99_ms": 12.5}
    newer = store.record_image(m.id, "sha256:abd", "cd4ml/wine:1b", None, "failed", {"error": "x"})
    assert [i.id for i in store.images_for(m.id)] == [newer.id, img.id]
    with pytest.raises(StoreError):
        store.image(999)


def test_one_current_deployment_per_environment(store):
    m1, m2 = _model(store), _model(store)
    d1 = store.finish_deployment(
        store.start_deployment("wine", "staging", m1.id, "img:1", "local", "deploy", "ana").id,
        "healthy", url="http://127.0.0.1:1")
    assert d1.current and d1.status == "healthy" and d1.url == "http://127.0.0.1:1" and d1.ended_at
    prod = store.finish_deployment(
        store.start_deployment("wine", "production", m1.id, "img:1", "local", "promote", "bo").id,
        "healthy")
    d2 = store.start_deployment("wine", "staging", m2.id, "img:2", "local", "deploy", "ana",
                                details={"a": 1})
    assert d2.status == "in_progress" and not d2.current
    assert store.current_deployment("wine", "staging") == d1
    failed = store.finish_deployment(d2.id, "failed", details={"b": 2})
    assert not failed.current and failed.details == {"a": 1, "b": 2}
    assert store.current_deployment("wine", "staging").id == d1.id  # a failure changes nothing
    d3 = store.finish_deployment(
        store.start_deployment("wine", "staging", m2.id, "img:2", "local", "deploy", "ana").id, "healthy")
    assert store.current_deployment("wine", "staging").id == d3.id
    assert store.deployment(d1.id).status == "replaced" and not store.deployment(d1.id).current
    assert store.current_deployment("wine", "production").id == prod.id  # other env untouched
    currents = [d for d in store.deployments("wine", "staging") if d.current]
    assert [d.id for d in currents] == [d3.id]
    assert [d.id for d in store.deployments(model_version_id=m1.id)] == [prod.id, d1.id]
    assert [(d.environment, d.id) for d in store.current_deployments()] == [
        ("production", prod.id), ("staging", d3.id)]
    assert store.current_deployments("diabetes") == []
    # and the database itself refuses a second current row
    with pytest.raises(sa.exc.IntegrityError), store.tx() as conn:
        conn.execute(store_mod.deployments.insert().values(
            pipeline="wine", environment="staging", model_version_id=m1.id, image_ref="x",
            target="local", action="deploy", status="healthy", current=True, details={},
            started_at=store_mod.now()))
    with pytest.raises(StoreError):
        store.deployment(9999)


def test_approvals_round_trip(store):
    m = _model(store)
    a = store.record_approval(m.id, "production", "bo", "cli", {"comment": "ok"})
    store.record_approval(m.id, "staging", "cy", "github")
    assert store.approvals(m.id, "production") == [a]
    assert [x.approver for x in store.approvals(m.id)] == ["bo", "cy"]


# ------------------------------------------------------------------------------- locks


def test_lock_serialises_holders(db_url):
    Store(db_url).close()
    order: list[str] = []
    a_inside = threading.Event()

    def first():
        with Store(db_url) as s, s.lock("deploy:wine", "job-a"):
            order.append("a in")
            a_inside.set()
            time.sleep(0.5)
            order.append("a out")

    def second():
        a_inside.wait(10)
        with Store(db_url) as s, s.lock("deploy:wine", "job-b"):
            order.append("b in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert order == ["a in", "a out", "b in"]
    with Store(db_url) as s, s.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(store_mod.locks)).scalar() == 0


def test_lock_timeout_names_the_holder_and_other_names_are_free(store):
    with store.lock("deploy:wine", "job-a"):
        with pytest.raises(StoreError, match=r"lock 'deploy:wine' is held by job-a \(pid \d+ on "), \
                store.lock("deploy:wine", "job-b", timeout=0.3):
            pass
        with store.lock("deploy:diabetes", "job-b", timeout=0.3):
            pass


def test_lock_of_a_dead_holder_expires(store):
    # a lock an older cd4ml took records no process: its row stays until the ttl
    with store.tx() as conn:
        conn.execute(store_mod.locks.insert().values(name="deploy:wine", holder="dead#1",
                                                     expires_at=time.time() + 0.4))
    with pytest.raises(StoreError, match="held by dead, which"), store.lock("deploy:wine", "job-b", timeout=0.1):
        pass
    started = time.monotonic()
    with store.lock("deploy:wine", "job-b", timeout=5), store.read() as conn:
        holder = conn.execute(sa.select(store_mod.locks.c.holder)).scalar()
    assert holder.startswith("job-b#")
    assert time.monotonic() - started < 3


def test_lock_is_released_when_the_body_raises(store):
    with pytest.raises(RuntimeError), store.lock("deploy:wine", "job-a"):
        raise RuntimeError("deploy failed")
    with store.lock("deploy:wine", "job-b", timeout=0.1):
        pass


def test_states_come_back_as_their_enums_and_are_stored_as_plain_text(store):
    m = _model(store)
    run = store.run(m.run_id)
    assert run.status is RunStatus.RUNNING and run.kind is RunKind.PIPELINE
    assert store.finish_run(run.id, RunStatus.GATE_FAILED).status is RunStatus.GATE_FAILED
    store.record_metrics(run.id, [{"name": "accuracy", "value": 0.9}])
    assert store.metrics(run.id)[0].scope is MetricScope.CANDIDATE
    img = store.record_image(m.id, "sha256:" + "c" * 64, "cd4ml/wine:1", 1)
    assert img.infra_status is InfraStatus.PENDING
    dep = store.start_deployment("wine", "staging", m.id, "cd4ml/wine:1", "local",
                                 DeployAction.DEPLOY, "ana")
    assert dep.status is DeploymentStatus.IN_PROGRESS and dep.action is DeployAction.DEPLOY
    done = store.finish_deployment(dep.id, DeploymentStatus.HEALTHY)
    assert done.status is DeploymentStatus.HEALTHY and done.current
    assert store.record_approval(m.id, "staging", "bo", ApprovalSource.CLI).source is ApprovalSource.CLI
    # the database holds the same words as before the enums: no migration, old rows read back
    with store.read() as conn:
        assert conn.execute(sa.text("SELECT status, kind FROM runs")).one() == ("gate_failed", "pipeline")
        assert conn.execute(sa.text("SELECT status FROM deployments")).scalar() == "healthy"
    with store.tx() as conn:
        conn.execute(sa.text("UPDATE runs SET status = 'validation_failed'"))
    assert store.run(run.id).status is RunStatus.VALIDATION_FAILED


@pytest.mark.parametrize("content,says", [(b"", "empty (0 bytes)"),
                                          (b"PK\x03\x04 not a database at all", "not a SQLite database")])
def test_a_truncated_or_foreign_store_file_is_refused_not_replaced(tmp_path, content, says):
    path = tmp_path / "cd4ml.db"
    with Store(f"sqlite:///{path}") as store:
        run = store.start_run("wine")
        store.register_model("wine", run.id, "classification", "/a", "ab" * 32, {}, {})
    path.write_bytes(content)
    for f in tmp_path.glob("cd4ml.db-*"):
        f.unlink()
    with pytest.raises(StoreError, match=re.escape(says)):
        Store(f"sqlite:///{path}")
    assert path.read_bytes() == content  # left as found, for whoever restores it


# ------------------------------------------------------------------------------- many runs at once


@pytest.mark.parametrize("url", ["file", "sqlite://"])
def test_fingerprint_moves_with_every_write(url, db_url):
    with Store(db_url if url == "file" else url) as s:
        seen = {s.fingerprint()}
        assert s.fingerprint() in seen  # reading changes nothing
        run = s.start_run("wine")
        seen.add(s.fingerprint())
        s.finish_run(run.id, "succeeded")  # an update, not an insert
        seen.add(s.fingerprint())
        model = s.register_model("wine", run.id, "classification", "/a", "a" * 64, {}, {})
        seen.add(s.fingerprint())
        s.set_model_flags(model.id, bad=True)
        seen.add(s.fingerprint())
        s.set_model_flags(model.id, blessed=True)
        seen.add(s.fingerprint())
        s.update_run(run.id, status="gate_failed")  # a status change alone
        seen.add(s.fingerprint())
        image = s.record_image(model.id, "sha256:1", "cd4ml/wine:1", 1)
        seen.add(s.fingerprint())
        s.update_image(image.id, infra_status="passed")
        seen.add(s.fingerprint())
        assert len(seen) == 9


def test_fingerprint_sees_another_process_write(db_url):
    with Store(db_url) as reader, Store(db_url) as writer:
        before = reader.fingerprint()
        writer.start_run("wine")
        assert reader.fingerprint() != before


def test_overall_metrics_and_model_summaries_of_many_runs(store):
    runs = [store.start_run("wine") for _ in range(3)]
    for i, r in enumerate(runs):
        store.record_metrics(r.id, [{"name": "accuracy", "value": 0.5 + i / 10},
                                    {"name": "accuracy", "value": 0.1, "slice": "s", "slice_value": "a"},
                                    {"name": "accuracy", "value": 0.2, "scope": "production"}])
    model = store.register_model("wine", runs[1].id, "classification", "/a", "a" * 64,
                                 {"inputs": []}, {"big": list(range(100))})
    overall = store.overall_metrics([runs[0].id, runs[1].id])
    assert [(m.run_id, m.name, m.value) for m in overall] == [
        (runs[0].id, "accuracy", 0.5), (runs[1].id, "accuracy", 0.6)]  # no slice, no production
    assert len(store.overall_metrics(None)) == 3
    assert len(store.overall_metrics([r.id for r in runs] * 400)) == 3  # chunked, each id once
    [summary] = store.model_summaries([r.id for r in runs])
    assert (summary.id, summary.ref, summary.run_id, summary.blessed) == (model.id, "wine:1", runs[1].id, False)
    assert store.model_summaries(None) == [summary]
