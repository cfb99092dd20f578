"""The store's history of schema changes: named migrations, each frozen once released.

A migration is a name and the SQL it runs. ``0001_initial`` is the literal DDL of cd4ml 0.1.0,
not ``create_all`` over today's tables: were it derived from the live definitions in
``schema.py``, the first added column would be created by it on a fresh store and then added
again by the migration that adds it.

To change the schema: append a ``Migration`` to ``MIGRATIONS`` with a new name (the order of the
tuple is the order they are applied in) and change the live table in ``schema.py`` to match;
``tests/unit/test_migrations.py`` checks that a fresh store's schema equals the live one. Never
edit or rename a released migration: stores in the field have recorded its name as done.

The bookkeeping table ``schema_migrations`` holds one row per applied name. ``Store.migrate``
applies each pending migration in its own transaction together with its row, so a failure leaves
neither behind; 0.1.0's ``schema_version`` table (version numbers) is adopted on the way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from cd4ml.errors import StoreError

#: the dialects whose DDL the migrations spell out
DIALECTS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Migration:
    """One named schema change. ``apply`` runs inside the transaction that records ``name``."""

    name: str
    apply: Callable[[sa.Connection], None]


def ddl(text: str, **per_dialect: tuple[str, str]) -> Callable[[sa.Connection], None]:
    """A migration body from literal SQL: statements separated by ``;``, where each
    ``{token}`` is replaced by its (SQLite, PostgreSQL) spelling for the connection's dialect."""

    def apply(conn: sa.Connection) -> None:
        i = DIALECTS.index(conn.dialect.name)
        sql = text.format(**{k: v[i] for k, v in per_dialect.items()})
        for statement in filter(None, (s.strip() for s in sql.split(";"))):
            conn.exec_driver_sql(statement)

    return apply


# The DDL SQLAlchemy emitted for cd4ml 0.1.0's tables, verbatim; the dialects differed only in
# the type of an autoincrementing key and in how the partial index says "current".
_INITIAL = """
CREATE TABLE datasets (
    hash VARCHAR(64) NOT NULL,
    path TEXT NOT NULL,
    format VARCHAR(16) NOT NULL,
    rows INTEGER NOT NULL,
    columns JSON NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (hash)
);
CREATE TABLE locks (
    name VARCHAR(255) NOT NULL,
    holder VARCHAR(255) NOT NULL,
    expires_at FLOAT NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE runs (
    id VARCHAR(32) NOT NULL,
    pipeline VARCHAR(64) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    status VARCHAR(24) NOT NULL,
    git_commit VARCHAR(64),
    branch VARCHAR(255),
    actor VARCHAR(255),
    spec_hash VARCHAR(64),
    code_hash VARCHAR(64),
    data_hash VARCHAR(64),
    cache_key VARCHAR(64),
    params JSON NOT NULL,
    tags JSON NOT NULL,
    started_at VARCHAR(32) NOT NULL,
    ended_at VARCHAR(32),
    error TEXT,
    reused_from VARCHAR(32),
    PRIMARY KEY (id)
);
CREATE INDEX ix_runs_cache_key ON runs (cache_key);
CREATE INDEX ix_runs_pipeline ON runs (pipeline);
CREATE TABLE metrics (
    id {serial} NOT NULL,
    run_id VARCHAR(32) NOT NULL,
    name VARCHAR(64) NOT NULL,
    value FLOAT,
    scope VARCHAR(16) NOT NULL,
    slice VARCHAR(255) DEFAULT '' NOT NULL,
    slice_value VARCHAR(255) DEFAULT '' NOT NULL,
    step INTEGER,
    model_version INTEGER,
    created_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES runs (id)
);
CREATE INDEX ix_metrics_run_id ON metrics (run_id);
CREATE TABLE model_versions (
    id {serial} NOT NULL,
    pipeline VARCHAR(64) NOT NULL,
    version INTEGER NOT NULL,
    run_id VARCHAR(32) NOT NULL,
    task VARCHAR(16) NOT NULL,
    artifact_uri TEXT NOT NULL,
    sha256 VARCHAR(64) NOT NULL,
    signature JSON NOT NULL,
    stats JSON NOT NULL,
    blessed BOOLEAN NOT NULL,
    bad BOOLEAN NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uq_model_version UNIQUE (pipeline, version),
    FOREIGN KEY(run_id) REFERENCES runs (id)
);
CREATE INDEX ix_model_versions_run_id ON model_versions (run_id);
CREATE TABLE validations (
    id {serial} NOT NULL,
    run_id VARCHAR(32) NOT NULL,
    suite VARCHAR(255),
    success BOOLEAN NOT NULL,
    expectations JSON NOT NULL,
    drift JSON NOT NULL,
    baseline_version INTEGER,
    created_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES runs (id)
);
CREATE INDEX ix_validations_run_id ON validations (run_id);
CREATE TABLE approvals (
    id {serial} NOT NULL,
    model_version_id INTEGER NOT NULL,
    environment VARCHAR(64) NOT NULL,
    approver VARCHAR(255) NOT NULL,
    source VARCHAR(32) NOT NULL,
    details JSON NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(model_version_id) REFERENCES model_versions (id)
);
CREATE TABLE deployments (
    id {serial} NOT NULL,
    pipeline VARCHAR(64) NOT NULL,
    environment VARCHAR(64) NOT NULL,
    model_version_id INTEGER NOT NULL,
    image_ref TEXT NOT NULL,
    target VARCHAR(16) NOT NULL,
    action VARCHAR(16) NOT NULL,
    status VARCHAR(16) NOT NULL,
    current BOOLEAN NOT NULL,
    actor VARCHAR(255),
    reason TEXT,
    url TEXT,
    details JSON NOT NULL,
    started_at VARCHAR(32) NOT NULL,
    ended_at VARCHAR(32),
    PRIMARY KEY (id),
    FOREIGN KEY(model_version_id) REFERENCES model_versions (id)
);
CREATE UNIQUE INDEX uq_current_deployment ON deployments (pipeline, environment) WHERE {current};
CREATE TABLE gate_decisions (
    id {serial} NOT NULL,
    run_id VARCHAR(32) NOT NULL,
    model_version_id INTEGER,
    passed BOOLEAN NOT NULL,
    rules JSON NOT NULL,
    baseline_version INTEGER,
    overridden BOOLEAN NOT NULL,
    override_by VARCHAR(255),
    override_reason TEXT,
    created_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES runs (id),
    FOREIGN KEY(model_version_id) REFERENCES model_versions (id)
);
CREATE INDEX ix_gate_decisions_run_id ON gate_decisions (run_id);
CREATE TABLE images (
    id {serial} NOT NULL,
    model_version_id INTEGER NOT NULL,
    image_id VARCHAR(128) NOT NULL,
    reference TEXT NOT NULL,
    digest TEXT,
    size_bytes BIGINT,
    infra_status VARCHAR(16) NOT NULL,
    infra_report JSON NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    pushed_at VARCHAR(32),
    PRIMARY KEY (id),
    FOREIGN KEY(model_version_id) REFERENCES model_versions (id)
);
CREATE INDEX ix_images_model_version_id ON images (model_version_id)
"""

_MONITORING = """
CREATE TABLE prediction_baselines (
    model_version_id INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    predictions JSON NOT NULL,
    calibration JSON NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (model_version_id),
    FOREIGN KEY(model_version_id) REFERENCES model_versions (id)
);
CREATE TABLE labels (
    id {serial} NOT NULL,
    pipeline VARCHAR(64) NOT NULL,
    request_id VARCHAR(200) NOT NULL,
    row_index INTEGER NOT NULL,
    label JSON NOT NULL,
    slices JSON NOT NULL,
    label_time VARCHAR(32),
    prediction_time VARCHAR(32) NOT NULL,
    model_version INTEGER NOT NULL,
    source VARCHAR(64) NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uq_label UNIQUE (pipeline, request_id, row_index)
);
CREATE INDEX ix_labels_window ON labels (pipeline, prediction_time);
CREATE TABLE monitorings (
    id {serial} NOT NULL,
    pipeline VARCHAR(64) NOT NULL,
    environment VARCHAR(64) NOT NULL,
    model_version_id INTEGER NOT NULL,
    window_from VARCHAR(32) NOT NULL,
    window_to VARCHAR(32) NOT NULL,
    rows INTEGER NOT NULL,
    breached BOOLEAN NOT NULL,
    findings JSON NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(model_version_id) REFERENCES model_versions (id)
);
CREATE INDEX ix_monitorings_model_version_id ON monitorings (model_version_id)
"""

_STEPS = """
CREATE TABLE deployment_steps (
    id {serial} NOT NULL,
    deployment_id INTEGER NOT NULL,
    kind VARCHAR(16) NOT NULL,
    weight INTEGER NOT NULL,
    status VARCHAR(16) NOT NULL,
    analysis JSON NOT NULL,
    details JSON NOT NULL,
    actor VARCHAR(255),
    started_at VARCHAR(32) NOT NULL,
    ended_at VARCHAR(32),
    PRIMARY KEY (id),
    FOREIGN KEY(deployment_id) REFERENCES deployments (id)
);
CREATE INDEX ix_deployment_steps_deployment_id ON deployment_steps (deployment_id)
"""

#: every migration, in the order applied; append only (see the module's docstring)
MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_initial", ddl(_INITIAL, serial=("INTEGER", "SERIAL"),
                                  current=("current = 1", "current"))),
    # who runs a run, and its heartbeat: a run whose process died is shown and marked abandoned
    Migration("0002_run_liveness", ddl("ALTER TABLE runs ADD COLUMN holder VARCHAR(255);"
                                       "ALTER TABLE runs ADD COLUMN heartbeat_at VARCHAR(32)")),
    # cd4ml monitor and cd4ml labels (issue 16): held-out predictions per version, labels
    # joined to logged predictions, monitoring results
    Migration("0003_monitoring", ddl(_MONITORING, serial=("INTEGER", "SERIAL"))),
    # who holds a lock (the process, as runs record it), since when, and its heartbeat: a lock
    # whose holder was killed is taken over at once instead of after its expiry
    Migration("0004_deploy_lock_liveness", ddl("ALTER TABLE locks ADD COLUMN owner VARCHAR(255);"
                                               "ALTER TABLE locks ADD COLUMN acquired_at VARCHAR(32);"
                                               "ALTER TABLE locks ADD COLUMN heartbeat_at VARCHAR(32)")),
    # progressive delivery (issue 17): each canary/shadow step and its analysis
    Migration("0005_deployment_steps", ddl(_STEPS, serial=("INTEGER", "SERIAL"))),
    # the web view's runs page, answered by the database (store/runtable.py): newest first
    # read in order; a run's last overall value of one metric and its newest model version
    # (blessed, version) found by one seek in an index holding them, not by reading the rows
    Migration("0006_runs_page_indexes", ddl(
        "CREATE INDEX ix_runs_started_at ON runs (started_at, id);"
        "CREATE INDEX ix_metrics_last_value ON metrics (name, scope, slice, run_id, id, value);"
        "CREATE INDEX ix_model_versions_newest ON model_versions (run_id, id, version, blessed)")),
)

_bookkeeping = sa.MetaData()
#: one row per applied migration; its shape is never changed (every version of cd4ml reads it)
schema_migrations = sa.Table(
    "schema_migrations", _bookkeeping,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("applied_at", sa.String(32), nullable=False),
)
# 0.1.0 recorded migration numbers here; number n was the n-th migration of this tuple
_LEGACY = "schema_version"


def check_dialect(conn: sa.Connection) -> None:
    """Refuse a database whose DDL the migrations do not spell out, before touching it."""
    if conn.dialect.name not in DIALECTS:
        raise StoreError(f"the store does not support {conn.dialect.name} databases; use SQLite "
                         "(sqlite:///path.db) or PostgreSQL (postgresql+psycopg://...)")


def applied(conn: sa.Connection) -> list[str] | None:
    """The names of the migrations applied to this database, oldest first; None when its
    bookkeeping is not this version's (no ``schema_migrations`` table yet, or 0.1.0's left over)."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(schema_migrations.name) or inspector.has_table(_LEGACY):
        return None
    q = sa.select(schema_migrations.c.name).order_by(schema_migrations.c.applied_at,
                                                     schema_migrations.c.name)
    return list(conn.execute(q).scalars())


def pending(done: list[str] | None) -> list[Migration]:
    """The migrations not in ``done``, in order."""
    seen = set(done or ())
    return [m for m in MIGRATIONS if m.name not in seen]


def prepare_bookkeeping(conn: sa.Connection, now: str) -> None:
    """Create ``schema_migrations`` if missing and fold 0.1.0's ``schema_version`` rows into it
    (then drop that table), in the caller's transaction."""
    schema_migrations.create(conn, checkfirst=True)
    if not sa.inspect(conn).has_table(_LEGACY):
        return
    done = set(conn.execute(sa.select(schema_migrations.c.name)).scalars())
    for number, applied_at in conn.execute(sa.text(f"SELECT version, applied_at FROM {_LEGACY}")):
        if not 1 <= number <= len(MIGRATIONS):
            raise StoreError(f"the store records schema version {number}, which this cd4ml does "
                             "not know; upgrade cd4ml")
        name = MIGRATIONS[number - 1].name
        if name not in done:
            conn.execute(schema_migrations.insert().values(name=name, applied_at=applied_at or now))
    conn.exec_driver_sql(f"DROP TABLE {_LEGACY}")
