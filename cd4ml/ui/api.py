"""The web view's JSON API: the same objects ``cd4ml ... --json`` prints (``reporting.api``),
one GET route each. The pages are drawn from these and nothing else.

| route | gives |
|---|---|
| ``/api/runs?pipeline=&status=&blessed=yes|no&q=&sort=&order=&page=&per_page=`` | a page of the runs table |
| ``/api/runs.csv?...&columns=a,b`` | every matching run as CSV |
| ``/api/models?pipeline=`` | ``cd4ml models --json`` |
| ``/api/show/REF`` | ``cd4ml show REF --json`` (a run id or PIPELINE:VERSION) |
| ``/api/lineage/PIPELINE:VERSION`` | ``cd4ml lineage REF --json`` |
| ``/api/prediction/REQUEST_ID?pipeline=`` | ``cd4ml lineage --request-id ID --json`` |
| ``/api/compare?ref=A&ref=B[&ref=C...]`` | ``cd4ml compare A B --json`` for B, C... against A, and the metrics of A's pipeline across versions with its gate rules |
| ``/api/environments?probe=1`` | ``cd4ml status --json`` and ``history --json`` of every pipeline, approvals, monitoring |
| ``/api/deployment/ID`` | a deployment and the predictions it served |
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cd4ml.errors import Cd4mlError
from cd4ml.reporting import api as views
from cd4ml.reporting.console import to_jsonable
from cd4ml.store import Store
from cd4ml.ui import environments
from cd4ml.ui.runs import RunsQuery, RunsTable

MAX_COMPARED = 8


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def json_response(obj: Any, status: int = 200) -> Response:
    # NaN is not JSON a browser can parse: to_jsonable spells non-finite numbers out
    body = json.dumps(to_jsonable(obj), default=str, allow_nan=False).encode()
    return Response(status, "application/json; charset=utf-8", body)


def error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


class Api:
    """Answers ``/api/...`` GETs from one store (read only)."""

    def __init__(self, store: Store, root: Path, log_paths: list[Path] | None = None):
        self.store = store
        self.root = root
        self.given_logs = log_paths
        self.runs = RunsTable(store)

    def log_paths(self) -> list[Path]:
        from cd4ml.reporting.lineage import default_log_paths

        # looked up per request: environments deployed while the view runs log to new files
        return list(self.given_logs) if self.given_logs else default_log_paths()

    def handle(self, path: str, query: dict[str, list[str]]) -> Response:
        route, _, rest = path.removeprefix("/api/").partition("/")
        arg = unquote(rest)
        try:
            return self._route(route, arg, query)
        except Cd4mlError as e:
            return error(404, str(e))

    def _route(self, route: str, arg: str, query: dict[str, list[str]]) -> Response:
        def one(name: str) -> str:
            return (query.get(name) or [""])[0]

        if route == "runs":
            return json_response(self.runs.page(RunsQuery.from_query(query)))
        if route == "runs.csv":
            columns = [c for c in one("columns").split(",") if c] or None
            return Response(200, "text/csv; charset=utf-8",
                            self.runs.csv(RunsQuery.from_query(query), columns).encode(),
                            (("Content-Disposition", 'attachment; filename="cd4ml-runs.csv"'),))
        if route == "models":
            return json_response(views.models_json(self.store, one("pipeline") or None, limit=1000))
        if route == "show" and arg:
            return json_response(views.show_json(self.store, arg))
        if route == "lineage" and arg:
            return self._lineage(arg)
        if route == "prediction" and arg:
            from cd4ml.reporting.lineage import prediction_lineage

            found = prediction_lineage(self.store, arg, self.log_paths(), one("pipeline") or None)
            return json_response(views.prediction_json(found))
        if route == "compare":
            return self._compare(query.get("ref") or [])
        if route == "environments":
            names = sorted(set(self.runs.pipelines())
                           | {d.pipeline for d in self.store.current_deployments()})
            return json_response(environments.environments(self.store, names, self.root,
                                                           probe=one("probe") == "1"))
        if route == "deployment" and arg.isdigit():
            return json_response(environments.deployment(self.store, int(arg), self.log_paths()))
        return error(404, f"no API route /api/{route}; see the table in cd4ml/ui/api.py")

    def _lineage(self, ref: str) -> Response:
        from cd4ml.errors import UsageError
        from cd4ml.reporting.lineage import lineage

        try:
            result = lineage(self.store, ref)  # the one grammar of model versions (cd4ml.refs)
        except UsageError as e:
            return error(400, str(e))
        return json_response(views.lineage_json(result))

    def _compare(self, refs: list[str]) -> Response:
        from cd4ml.reporting.lineage import compare

        refs = list(dict.fromkeys(r for r in refs if r))
        if not 2 <= len(refs) <= MAX_COMPARED:
            return error(400, f"compare needs 2 to {MAX_COMPARED} references (ref=A&ref=B), "
                              f"got {len(refs)}")
        pairs = [compare(self.store, refs[0], other) for other in refs[1:]]
        base = pairs[0].a
        pipeline = base.model.pipeline if base.model else base.source.pipeline
        return json_response({
            "refs": [views.label(pairs[0].a)] + [views.label(c.b) for c in pairs],
            "comparisons": [views.compare_json(c) for c in pairs],
            "pipeline": pipeline,
            "history": views.metric_history(self.store, pipeline),
        })
