"""The git store's records: what a write transaction journals, that replaying the journal on an
empty store rebuilds the same rows (ids included), and that a changed record is recognised."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cd4ml.errors import StoreError
from cd4ml.store import Store, journal, metadata, now
from cd4ml.store.backends import backend_for
from cd4ml.store.journal import Record, RecordError
from tests.helpers import Journaled


def everything(store: Store) -> dict[str, list[tuple]]:
    with store.read() as conn:
        return {t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key))]
                for t in metadata.sorted_tables if t.name != "schema_version"}


def test_replaying_the_records_rebuilds_the_same_rows():
    store = Journaled("sqlite://")
    for pipeline in ("wine", "iris", "wine"):
        run = store.start_run(pipeline, params={"nan": float("nan")})
        store.record_metrics(run.id, [{"name": "a", "value": 1.0}, {"name": "a", "value": None}])
        model = store.register_model(pipeline, run.id, "classification", "/a", "f" * 64, {}, {})
        store.record_gate(run.id, model.id, True, [], None)
        dep = store.start_deployment(pipeline, "prod", model.id, "i", "local", "deploy", "me")
        store.finish_deployment(dep.id, "healthy")
        with store.lock("deploy", "me"):
            pass
    assert store.records and all(r.statements for r in store.records)

    fresh = Store("sqlite://")
    with fresh.engine.begin() as conn:
        for record in store.records:
            journal.replay(conn, Record.from_bytes(record.to_bytes()).statements, atomic=True)
    assert everything(fresh) == everything(store)
    assert [m.version for m in fresh.models("wine")] == [2, 1]


def test_a_record_is_plain_json_with_its_own_checksum():
    record = Record.new("start_run", "2026-12-03T10:20:37.123456Z", "alice", "0001_initial",
                        [journal.Statement("INSERT INTO runs (id) VALUES (?)", ["abc"])])
    text = record.to_bytes().decode()
    assert '"op": "start_run"' in text and '"actor": "alice"' in text
    assert record.path == f"records/2026-12-03/{record.id[0]}/{record.id[1]}/102037Z-start_run-{record.id}.json"
    assert Record.from_bytes(record.to_bytes()) == record

    with pytest.raises(RecordError, match="does not match its sha256"):
        Record.from_bytes(text.replace("alice", "mallory").encode())
    # a record with a valid checksum may still only change rows of the store's tables
    attach = Record.new("x", record.at, "eve", "0001_initial",
                        [journal.Statement("ATTACH DATABASE '/tmp/x' AS x", [])])
    with pytest.raises(RecordError, match="statement 1 is not a write to a store table"):
        Record.from_bytes(attach.to_bytes())
    with pytest.raises(RecordError, match="not JSON"):
        Record.from_bytes(b"{")
    with pytest.raises(RecordError, match="not a cd4ml-store-record/1 record"):
        Record.from_bytes(b'{"format": "other"}')


def test_a_replayed_clash_is_raised_as_sqlalchemy_would():
    store = Store("sqlite://")
    run = store.start_run("wine")
    insert = journal.Statement("INSERT INTO model_versions (pipeline, version, run_id, task, "
                               "artifact_uri, sha256, signature, stats, blessed, bad, created_at) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               ["wine", 1, run.id, "c", "/a", "f", "{}", "{}", 0, 0, now()])
    with store.engine.begin() as conn:
        journal.replay(conn, [insert])
        with pytest.raises(sa.exc.IntegrityError):
            journal.replay(conn, [insert], atomic=True)
    assert [m.version for m in store.models("wine")] == [1]


def test_backends_are_chosen_by_url_prefix(tmp_path, monkeypatch):
    from cd4ml.store.gitstore import GitStore

    assert backend_for("git+origin") is GitStore
    assert backend_for("sqlite://") is None and backend_for("postgresql+psycopg://h/d") is None
    assert type(Store("sqlite://")) is Store
    monkeypatch.chdir(tmp_path)  # no repository here, so no remote 'origin'
    monkeypatch.setenv("CD4ML_STORE_URL", "git+origin")
    with pytest.raises(StoreError, match="no git remote 'origin'"):
        Store()
    with pytest.raises(StoreError, match="is not git\\+<remote>#<branch>"):
        Store("git+origin#bad..branch")


def test_a_record_reads_back_as_written_whatever_its_text_holds():
    # parsed by orjson, with the json module for what orjson refuses (a lone surrogate)
    for actor in ("alice", "\ud800 half a pair", "ünïcode ☃", "a\x00b"):
        record = Record.new("start_run", "2026-12-03T10:20:37.123456Z", actor, "0001_initial",
                            [journal.Statement("INSERT INTO runs (id) VALUES (?)",
                                               [actor, 2**63 - 1, 0.1, None])])
        assert Record.from_bytes(record.to_bytes()) == record
