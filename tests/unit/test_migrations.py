"""Named, frozen migrations on SQLite: a fresh store has the schema the queries use, a store made
by cd4ml 0.1.0 upgrades to exactly that schema with every record intact, and opening a store
whose schema is current only reads (so it works read-only and never queues behind a writer)."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from cd4ml.cli import main
from cd4ml.errors import StoreError
from cd4ml.store import MIGRATIONS, Store, metadata
from tests.helpers import STORE_0_1_0, reflect_schema, start_reader, table_columns, table_rows

ALL = [m.name for m in MIGRATIONS]
BOOKKEEPING = ("schema_migrations", "schema_version")


def _store_0_1_0(tmp_path: Path) -> Path:
    """A copy of the SQLite store cd4ml 0.1.0 made (a wine pipeline run, its cached re-run, a
    diabetes train, a tracked run, an image, a deployment, an approval)."""
    path = tmp_path / "old.db"
    path.write_bytes(gzip.decompress((STORE_0_1_0 / "sqlite.db.gz").read_bytes()))
    return path


def _fresh(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    Store(url).close()
    return url


def test_a_fresh_store_has_the_schema_the_queries_use(tmp_path):
    live = f"sqlite:///{tmp_path / 'live.db'}"
    engine = sa.create_engine(live)
    metadata.create_all(engine)
    engine.dispose()
    # a column added to schema.py without a migration (or the other way round) fails here
    assert reflect_schema(_fresh(tmp_path), exclude=BOOKKEEPING) == reflect_schema(live)


def test_a_0_1_0_store_upgrades_to_the_fresh_schema_with_its_records(tmp_path):
    old = _store_0_1_0(tmp_path)
    url = f"sqlite:///{old}"
    before = table_rows(url, exclude=BOOKKEEPING)
    columns = table_columns(url)  # later migrations add columns: the old ones keep their values
    with sqlite3.connect(old) as conn:
        (applied_then,) = conn.execute("SELECT applied_at FROM schema_version").fetchone()
    assert {table for table, rows in before.items() if not rows} == {"locks"}  # held only briefly

    with Store(url) as s:
        assert s.applied_migrations() == ALL
        assert s.migrate() == []

    assert reflect_schema(url) == reflect_schema(_fresh(tmp_path))
    assert table_rows(url, exclude=BOOKKEEPING, keep=columns) == before
    assert table_rows(url)["schema_migrations"][0] == ("0001_initial", applied_then)


def test_an_upgraded_store_reads_and_writes_as_before(tmp_path):
    with Store(f"sqlite:///{_store_0_1_0(tmp_path)}") as s:
        runs = s.runs()
        assert {r.pipeline for r in runs} == {"wine", "diabetes"}
        reused = next(r for r in runs if r.reused_from)
        source = s.run(reused.reused_from)
        wine = s.model_for_run(source.id)
        assert wine.ref == "wine:1" and wine.blessed
        assert s.gate(source.id).passed and len(s.metrics(source.id)) > 10
        assert s.current_deployment("wine", "staging").model_version_id == wine.id
        assert [a.approver for a in s.approvals(wine.id, "production")] == ["bob"]
        assert s.images_for(wine.id)[0].infra_report == {"p99_ms": 12.5, "size_mb": 117.7}
        tracked = next(r for r in runs if r.kind == "tracked")
        assert [m.value for m in s.metrics(tracked.id)] == [0.5, None]  # NaN stays "not a number"
        # the next version continues the old numbering
        run = s.start_run("wine")
        assert s.register_model("wine", run.id, "classification", "/a", "b" * 64, {}, {}).version == 2


def test_opening_a_current_store_does_not_wait_for_a_writer(tmp_path):
    url = _fresh(tmp_path)
    writer = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another job's write transaction, held
    writer.execute("INSERT INTO locks (name, holder, expires_at) VALUES ('x', 'other job', 0)")
    reader, seen = start_reader(url)
    reader.join(timeout=10)
    blocked = reader.is_alive()
    writer.execute("ROLLBACK")
    writer.close()
    reader.join()
    assert not blocked, "opening the store queued behind another job's write transaction"
    assert seen == [[]]


def test_read_commands_work_on_a_read_only_file(tmp_path, capsys):
    _fresh(tmp_path)
    ro = f"sqlite:///file:{tmp_path / 'fresh.db'}?mode=ro&uri=true"
    with Store(ro) as s:
        assert s.runs() == [] and s.applied_migrations() == ALL
    assert main(["runs", "--store", ro]) == 0
    assert main(["models", "--store", ro]) == 0
    with Store(ro) as s, pytest.raises(StoreError, match="readonly"):
        s.start_run("wine")


def test_an_old_store_opened_read_only_says_to_upgrade_it(tmp_path):
    old = _store_0_1_0(tmp_path)
    before = old.read_bytes()
    with pytest.raises(StoreError, match="cannot upgrade its bookkeeping: .*readonly.*write access"):
        Store(f"sqlite:///file:{old}?mode=ro&uri=true")
    assert old.read_bytes() == before
