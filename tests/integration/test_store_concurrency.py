"""Several CI jobs write to one store at once: eight writer processes, on a SQLite file and on a
real PostgreSQL, each opening the fresh store at the same moment (so the migrations race too)
and then starting runs, recording data sets, metrics, model versions and gate decisions.

Nothing may be lost, no writer may fail with "database is locked", and the model versions of
the one pipeline they share must come out unique and contiguous: 1..N.
"""

from __future__ import annotations

import multiprocessing
import traceback

import pytest
import sqlalchemy as sa

from cd4ml.store import MIGRATIONS
from tests.helpers import outcome, run_workers

WRITERS = 8
RUNS_EACH = 4
PIPELINE = "shared"


def _writer(url: str, index: int, barrier, results) -> None:
    """One CI job: open the store when every other job does, then record RUNS_EACH runs."""
    try:
        from cd4ml.store import Store

        barrier.wait(timeout=60)
        store = Store(url)
        # every job reads the same data, and records it at the same moment: one shared row
        barrier.wait(timeout=60)
        store.record_dataset("d" * 64, "data.csv", "csv", 100, ["a", "b"])
        versions = []
        for i in range(RUNS_EACH):
            run = store.start_run(PIPELINE, git_commit=f"{index:02d}{i:02d}" * 10, branch="main",
                                  actor=f"job{index}", data_hash="d" * 64, params={"i": i})
            store.record_dataset("d" * 64, "data.csv", "csv", 100, ["a", "b"])
            store.record_metrics(run.id, [
                {"name": "accuracy", "value": 0.5 + index / 100},
                {"name": "accuracy", "value": 0.4, "slice": "s", "slice_value": "x"},
                {"name": "accuracy", "value": 0.6, "scope": "production", "model_version": 1},
            ])
            model = store.register_model(PIPELINE, run.id, "classification", f"/a/{run.id}",
                                         "f" * 64, {"inputs": []}, {})
            store.record_gate(run.id, model.id, passed=i % 2 == 0, rules=[outcome("r")],
                              baseline_version=None)
            with store.lock(f"deploy:{PIPELINE}", holder=f"job{index}", timeout=60):
                store.update_run(run.id, tags={"locked": True})
            store.finish_run(run.id, "succeeded")
            versions.append(model.version)
        store.close()
        results.put((index, versions, None))
    except BaseException:  # noqa: BLE001 -- the parent reports it; a child's traceback is lost otherwise
        results.put((index, [], traceback.format_exc()))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'concurrent.db'}"
    return request.getfixturevalue("postgres_url")


def test_concurrent_writers_lose_nothing(store_url):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(store_url, i, barrier, results)) for i in range(WRITERS)]
    outcomes = run_workers(procs, results)

    errors = [err for _, _, err in outcomes if err]
    assert not errors, "a writer failed:\n" + "\n".join(errors)
    assert not any("database is locked" in (err or "") for _, _, err in outcomes)

    from cd4ml.store import Store, gate_decisions, metrics, runs

    total = WRITERS * RUNS_EACH
    with Store(store_url) as store:
        assert store.applied_migrations() == [m.name for m in MIGRATIONS]
        all_runs = store.runs(PIPELINE, limit=1000)
        assert len(all_runs) == total
        assert {r.status for r in all_runs} == {"succeeded"}
        assert all(r.tags == {"locked": True} for r in all_runs)
        versions = sorted(m.version for m in store.models(PIPELINE, limit=1000))
        assert versions == list(range(1, total + 1))
        # what each writer was told matches what the store holds
        told = sorted(v for _, vs, _ in outcomes for v in vs)
        assert told == versions
        with store.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(metrics)).scalar() == 3 * total
            assert conn.execute(sa.select(sa.func.count()).select_from(gate_decisions)).scalar() == total
            assert conn.execute(sa.select(sa.func.count(sa.distinct(runs.c.id)))).scalar() == total
        for run in all_runs:
            model = store.model_for_run(run.id)
            assert model is not None and model.run_id == run.id
            assert model.blessed == store.gate(run.id).passed
        assert store.dataset("d" * 64).rows == 100
        with store.read() as conn:
            held = conn.execute(sa.text("SELECT count(*) FROM locks")).scalar()
        assert held == 0
