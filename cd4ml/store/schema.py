"""The store's tables as the queries see them: the schema the migrations have built.

These definitions never create anything; ``migrations.py`` does, with frozen DDL. A change here
comes with a new migration there, and ``tests/unit/test_migrations.py`` fails until the two agree.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

datasets = sa.Table(
    "datasets", metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("columns", sa.JSON, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)
runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("pipeline", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # pipeline | tracked
    # running | succeeded | validation_failed | gate_failed | failed
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("git_commit", sa.String(64)),
    sa.Column("branch", sa.String(255)),
    sa.Column("actor", sa.String(255)),
    sa.Column("spec_hash", sa.String(64)),
    sa.Column("code_hash", sa.String(64)),
    sa.Column("data_hash", sa.String(64)),
    sa.Column("cache_key", sa.String(64), index=True),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("ended_at", sa.String(32)),
    sa.Column("error", sa.Text),
    sa.Column("reused_from", sa.String(32)),
    sa.Column("holder", sa.String(255)),  # host:pid:start of the process running it
    sa.Column("heartbeat_at", sa.String(32)),
    sa.Index("ix_runs_started_at", "started_at", "id"),  # the runs page, newest first
)
validations = sa.Table(
    "validations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("suite", sa.String(255)),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("expectations", sa.JSON, nullable=False),
    sa.Column("drift", sa.JSON, nullable=False),
    sa.Column("baseline_version", sa.Integer),
    sa.Column("created_at", sa.String(32), nullable=False),
)
metrics = sa.Table(
    "metrics", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("value", sa.Float),  # NULL: not a number (NaN, or could not be computed)
    sa.Column("scope", sa.String(16), nullable=False),  # candidate | production
    sa.Column("slice", sa.String(255), nullable=False, server_default=""),
    sa.Column("slice_value", sa.String(255), nullable=False, server_default=""),
    sa.Column("step", sa.Integer),
    sa.Column("model_version", sa.Integer),  # which version was scored, for production rows
    sa.Column("created_at", sa.String(32), nullable=False),
    # the runs page sorted by a metric: a run's last overall value, read from the index alone
    sa.Index("ix_metrics_last_value", "name", "scope", "slice", "run_id", "id", "value"),
)
model_versions = sa.Table(
    "model_versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pipeline", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("task", sa.String(16), nullable=False),
    sa.Column("artifact_uri", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("signature", sa.JSON, nullable=False),
    sa.Column("stats", sa.JSON, nullable=False),
    sa.Column("blessed", sa.Boolean, nullable=False, default=False),
    sa.Column("bad", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("pipeline", "version", name="uq_model_version"),
    # the runs page: a run's newest version (blessed, number) without reading its row
    sa.Index("ix_model_versions_newest", "run_id", "id", "version", "blessed"),
)
gate_decisions = sa.Table(
    "gate_decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("rules", sa.JSON, nullable=False),
    sa.Column("baseline_version", sa.Integer),
    sa.Column("overridden", sa.Boolean, nullable=False, default=False),
    sa.Column("override_by", sa.String(255)),
    sa.Column("override_reason", sa.Text),
    sa.Column("created_at", sa.String(32), nullable=False),
)
images = sa.Table(
    "images", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False, index=True),
    sa.Column("image_id", sa.String(128), nullable=False),
    sa.Column("reference", sa.Text, nullable=False),  # repository:tag
    sa.Column("digest", sa.Text),  # registry digest, after a push
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("infra_status", sa.String(16), nullable=False),  # pending | passed | failed
    sa.Column("infra_report", sa.JSON, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("pushed_at", sa.String(32)),
)
deployments = sa.Table(
    "deployments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pipeline", sa.String(64), nullable=False),
    sa.Column("environment", sa.String(64), nullable=False),
    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
    sa.Column("image_ref", sa.Text, nullable=False),
    sa.Column("target", sa.String(16), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # deploy | promote | rollback
    # in_progress | healthy | failed | replaced | rolled_back
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("current", sa.Boolean, nullable=False, default=False),
    sa.Column("actor", sa.String(255)),
    sa.Column("reason", sa.Text),
    sa.Column("url", sa.Text),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("ended_at", sa.String(32)),
    # the store can never show two current versions for one environment
    sa.Index(
        "uq_current_deployment", "pipeline", "environment", unique=True,
        sqlite_where=sa.text("current = 1"), postgresql_where=sa.text("current"),
    ),
)
approvals = sa.Table(
    "approvals", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
    sa.Column("environment", sa.String(64), nullable=False),
    sa.Column("approver", sa.String(255), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),  # cli | github
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)
locks = sa.Table(
    "locks", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),  # who (the actor) and a token
    sa.Column("expires_at", sa.Float, nullable=False),  # moved on by each heartbeat
    sa.Column("owner", sa.String(255)),  # host:pid:start of the process holding it
    sa.Column("acquired_at", sa.String(32)),
    sa.Column("heartbeat_at", sa.String(32)),
)

# ---- monitoring (issue 16): what the deployed model met, labels that came later, and the
# held-out predictions each version is compared with; created by migration 0003_monitoring.
prediction_baselines = sa.Table(
    "prediction_baselines", metadata,
    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), primary_key=True),
    sa.Column("rows", sa.Integer, nullable=False),
    # statistics of the predictions on the held-out rows, in cd4ml.stages.drift's format
    sa.Column("predictions", sa.JSON, nullable=False),
    # confidence bins on the held-out rows (classifiers with probabilities), for estimates
    sa.Column("calibration", sa.JSON, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)
labels = sa.Table(
    "labels", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pipeline", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(200), nullable=False),
    sa.Column("row_index", sa.Integer, nullable=False),  # which row of a multi-row request
    sa.Column("label", sa.JSON, nullable=False),
    sa.Column("slices", sa.JSON, nullable=False),
    sa.Column("label_time", sa.String(32)),
    # from the prediction log line, so monitoring fetches only its window's labels
    sa.Column("prediction_time", sa.String(32), nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),  # sha256 of the label file
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("pipeline", "request_id", "row_index", name="uq_label"),
    sa.Index("ix_labels_window", "pipeline", "prediction_time"),
)
monitorings = sa.Table(
    "monitorings", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pipeline", sa.String(64), nullable=False),
    sa.Column("environment", sa.String(64), nullable=False),
    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False,
              index=True),
    sa.Column("window_from", sa.String(32), nullable=False),
    sa.Column("window_to", sa.String(32), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("breached", sa.Boolean, nullable=False),
    sa.Column("findings", sa.JSON, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)


# ---- progressive delivery (issue 17): every step of a canary or shadow release and its
# analysis; created by migration 0005_deployment_steps.
deployment_steps = sa.Table(
    "deployment_steps", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment_id", sa.Integer, sa.ForeignKey("deployments.id"), nullable=False,
              index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # canary | shadow | abort_request
    sa.Column("weight", sa.Integer, nullable=False),  # percent of live traffic (0: a shadow)
    sa.Column("status", sa.String(16), nullable=False),  # running | passed | failed | aborted | requested
    sa.Column("analysis", sa.JSON, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("actor", sa.String(255)),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("ended_at", sa.String(32)),
)
