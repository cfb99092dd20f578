"""Environments in the web view: what runs where and whether it answers, the history of
deploys, promotions, rollbacks and approvals (who and why), monitoring findings when cd4ml
records them, and the predictions a deployment served.

Status and history are ``cd4ml status --json`` and ``cd4ml history --json``
(``release.deploy.status`` / ``history``) when the pipeline's spec is in this repository; a
pipeline known only from the store still shows its history, with health not probed.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cd4ml.errors import Cd4mlError
from cd4ml.reporting.console import to_jsonable
from cd4ml.store import Store

#: how much of the end of each prediction log is read for a deployment's recent predictions
TAIL_BYTES = 512 * 1024


def find_spec(pipeline: str, root: Path) -> Any:
    """The spec of ``pipeline`` under ``root/pipelines`` (``<name>.yaml`` or the one whose
    ``name:`` it is), or None."""
    from cd4ml.spec import load_spec

    folder = root / "pipelines"
    candidates = [folder / f"{pipeline}.yaml", folder / f"{pipeline}.yml"]
    candidates += sorted(p for p in folder.glob("*.y*ml") if p not in candidates) if folder.is_dir() else []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            spec = load_spec(path)
        except Cd4mlError:
            continue
        if spec.name == pipeline:
            return spec
    return None


def environments(store: Store, pipelines: Iterable[str], root: Path, probe: bool,
                 limit: int = 100) -> list[dict]:
    """Per pipeline: its environments now, its deployment history and the approvals given."""
    from cd4ml.release.state import deployment_history, history, status

    out = []
    for name in pipelines:
        spec = find_spec(name, root)
        if spec is not None:
            now = to_jsonable(status(spec, store, probe=probe))
            past = history(spec, store, limit=limit)
        else:
            now = [_unprobed(store, d) for d in store.current_deployments(name)]
            past = deployment_history(store, name, limit=limit)
        if not past and all(e["version"] is None for e in now):
            continue  # nothing was ever deployed
        out.append({"pipeline": name, "spec_found": spec is not None, "status": now,
                    "history": to_jsonable(past), "approvals": _approvals(store, name, past),
                    "monitoring": {e["environment"]: monitoring(store, name, e["environment"])
                                   for e in now}})
    return out


def _unprobed(store: Store, d: Any) -> dict:
    from cd4ml.release.state import EnvironmentStatus

    model = store.model_by_id(d.model_version_id)
    return to_jsonable(EnvironmentStatus(
        d.environment, d.target, model.version, d.image_ref, d.ended_at or d.started_at, d.action,
        d.actor, d.id, d.url, None, "not probed: no spec for this pipeline here", model.bad))


def _approvals(store: Store, pipeline: str, past: list) -> list[dict]:
    out = []
    for version in sorted({h.version for h in past}):
        model = store.model(pipeline, version)
        out += [{**to_jsonable(a), "version": version} for a in store.approvals(model.id)]
    return sorted(out, key=lambda a: a["created_at"], reverse=True)


def monitoring(store: Store, pipeline: str, environment: str) -> list | None:
    """Monitoring findings recorded for an environment, newest first; None while this store
    records none. The hook for ``cd4ml monitor`` (issue 16): once the store has
    ``monitoring_results(pipeline, environment, limit)``, its records appear on the
    Environments page as a table (one column per field), with nothing else to change here."""
    reader = getattr(store, "monitoring_results", None)
    if reader is None:
        return None
    return to_jsonable(reader(pipeline, environment, limit=20))


def deployment(store: Store, deployment_id: int, log_paths: list[Path], limit: int = 20) -> dict:
    """One deployment, its model version, and the newest predictions that version logged in
    that environment."""
    d = store.deployment(deployment_id)
    model = store.model_by_id(d.model_version_id)
    return {"deployment": to_jsonable(d), "ref": model.ref,
            "predictions": recent_predictions(log_paths, d.pipeline, d.environment,
                                              model.version, limit)}


def recent_predictions(log_paths: Iterable[Path], pipeline: str, environment: str,
                       version: int, limit: int) -> list[dict]:
    """The newest logged predictions of ``pipeline:version``: the environment's own logs
    (``<logs>/<pipeline>/<environment>/``) and any other log named, read from their ends."""
    found: deque[dict] = deque(maxlen=limit)
    for path in log_paths:
        parts = Path(path).parts
        if len(parts) >= 3 and parts[-3] == pipeline and parts[-2] != environment:
            continue  # another environment's log
        for record in _tail(Path(path)):
            if record.get("pipeline") in (None, pipeline) and record.get("model_version") == version:
                found.append({k: record.get(k) for k in ("time", "request_id", "model_version",
                                                         "inputs", "predictions")})
    return sorted(found, key=lambda r: str(r.get("time")), reverse=True)


def _tail(path: Path) -> Iterable[dict]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return
    lines = data.splitlines()
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first one is cut
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record
