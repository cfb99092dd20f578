"""Where cd4ml keeps its local state: ``.cd4ml/`` in the working directory, or ``CD4ML_HOME``;
each part can be moved on its own (store URL, artifacts, reports, prediction logs)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """``$CD4ML_HOME``, else ``./.cd4ml``."""
    return Path(os.environ.get("CD4ML_HOME") or Path.cwd() / ".cd4ml")


def _part(variable: str, name: str) -> Path:
    explicit = os.environ.get(variable)
    return Path(explicit) if explicit else home() / name


def artifacts_root() -> Path:
    """``$CD4ML_ARTIFACTS``, else ``<home>/artifacts``: model versions' directories."""
    return _part("CD4ML_ARTIFACTS", "artifacts")


def reports_dir() -> Path:
    """``$CD4ML_REPORTS``, else ``<home>/reports``: reports kept when GitHub is not told."""
    return _part("CD4ML_REPORTS", "reports")


def logs_root() -> Path:
    """``$CD4ML_LOGS``, else ``<home>/logs``: the prediction logs of deployed environments,
    ``<pipeline>/<environment>/<container>.jsonl``, kept when a container is replaced."""
    return _part("CD4ML_LOGS", "logs")


def prediction_log_dir(project: str, pipeline: str, environment: str) -> Path:
    """Where an environment's containers keep their prediction logs on the host
    (``<logs>/<project>/<pipeline>/<environment>``): outlives the containers, so a prediction
    stays traceable after its version was replaced (and ``cd4ml monitor`` reads them back)."""
    return (logs_root() / project / pipeline / environment).resolve()
