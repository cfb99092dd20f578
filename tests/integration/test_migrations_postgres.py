"""Named, frozen migrations on a real PostgreSQL: a store made by cd4ml 0.1.0 (its pg_dump,
tests/data/store-0.1.0) upgrades to exactly a fresh store's schema with every record intact, a
fresh store has the schema the queries use, and a role that may only SELECT reads a current store
without waiting for a migrator."""

from __future__ import annotations

import gzip

import pytest
import sqlalchemy as sa

from cd4ml.cli import main
from cd4ml.errors import StoreError
from cd4ml.store import MIGRATIONS, Store, metadata
from tests.helpers import STORE_0_1_0, reflect_schema, start_reader, table_columns, table_rows

pytestmark = pytest.mark.postgres

BOOKKEEPING = ("schema_migrations", "schema_version")


def _load_0_1_0(postgres_server, database: str) -> None:
    import psycopg

    dump = gzip.decompress((STORE_0_1_0 / "postgresql.sql.gz").read_bytes()).decode()
    # psql's own meta-commands (\restrict) are not SQL
    sql = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))
    with psycopg.connect(host=str(postgres_server.socket_dir), user=postgres_server.user,
                         dbname=database, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def database(postgres_server):
    """Make extra databases on the test cluster; drop them afterwards."""
    made = []

    def make() -> str:
        made.append(postgres_server.create_database())
        return made[-1]

    yield make
    for name in made:
        postgres_server.drop_database(name)


def test_a_0_1_0_store_upgrades_to_the_fresh_schema_with_its_records(postgres_server, database):
    old, fresh, live = database(), database(), database()
    _load_0_1_0(postgres_server, old)
    url = postgres_server.url(old)
    before = table_rows(url, exclude=BOOKKEEPING)
    columns = table_columns(url)  # later migrations add columns: the old ones keep their values
    assert {table for table, rows in before.items() if not rows} == {"locks"}

    with Store(url) as s:
        assert s.applied_migrations() == [m.name for m in MIGRATIONS]
        Store(postgres_server.url(fresh)).close()
        assert reflect_schema(url) == reflect_schema(postgres_server.url(fresh))
        assert table_rows(url, exclude=BOOKKEEPING, keep=columns) == before
        # sequences carried on: the next rows do not collide with the old ones
        run = s.start_run("wine")
        assert s.register_model("wine", run.id, "classification", "/a", "b" * 64, {}, {}).version == 2
        s.record_metrics(run.id, [{"name": "accuracy", "value": 0.9}])

    engine = sa.create_engine(postgres_server.url(live))
    metadata.create_all(engine)
    engine.dispose()
    assert reflect_schema(postgres_server.url(fresh), exclude=BOOKKEEPING) == \
        reflect_schema(postgres_server.url(live))


def _reader_url(postgres_server, database: str) -> str:
    import psycopg

    with psycopg.connect(host=str(postgres_server.socket_dir), user=postgres_server.user,
                         dbname=database, autocommit=True) as conn:
        conn.execute(f"DO $$ BEGIN CREATE ROLE reader_{database} LOGIN; "
                     "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader_{database}")
    return f"postgresql+psycopg://reader_{database}@/{database}?host={postgres_server.socket_dir}"


def test_a_select_only_role_reads_a_current_store(postgres_server, database, capsys):
    name = database()
    Store(postgres_server.url(name)).close()
    reader = _reader_url(postgres_server, name)
    with Store(reader) as s:
        assert s.runs() == []
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            s.start_run("wine")
    assert main(["runs", "--store", reader]) == 0


def test_a_select_only_role_cannot_upgrade_an_old_store_and_says_so(postgres_server, database):
    name = database()
    _load_0_1_0(postgres_server, name)
    with pytest.raises(StoreError, match="cannot upgrade its bookkeeping: .*permission denied.*write access"):
        Store(_reader_url(postgres_server, name))


def test_opening_a_current_store_does_not_wait_for_a_migrator(postgres_server, database):
    import psycopg

    name = database()
    url = postgres_server.url(name)
    Store(url).close()
    with psycopg.connect(host=str(postgres_server.socket_dir), user=postgres_server.user,
                         dbname=name) as migrator:
        migrator.execute("SELECT pg_advisory_xact_lock(4242)")  # a long migration under way
        reader, seen = start_reader(url)
        reader.join(timeout=10)
        blocked = reader.is_alive()
    reader.join()
    assert not blocked, "opening a current store waited for the migration lock"
    assert seen == [[]]
