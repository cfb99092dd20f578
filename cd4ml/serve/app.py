"""The endpoints of the model server, as plain methods from a request to (status, type, body).

Nothing here touches HTTP (that is :mod:`cd4ml.serve.handler`); a request that cannot be
served raises :class:`cd4ml.serve.schema.RequestError` with the status to answer.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from cd4ml.artifacts import ArtifactMeta
from cd4ml.serve import jsontext, schema
from cd4ml.serve.metrics import Metrics
from cd4ml.serve.numeric import Numbers
from cd4ml.serve.predlog import PredictionLog

JSON = "application/json"
#: every path the server answers (metrics keep one series per path, plus "other")
ENDPOINTS = ("/predict", "/health", "/ready", "/metadata", "/metrics", "/openapi.json")


class App:
    """What the handlers share: the model (once loaded), metrics, the log, canned bodies."""

    def __init__(self, meta: ArtifactMeta, fields: tuple[schema.Field, ...], log: PredictionLog,
                 metrics: Metrics, max_rows: int = 10_000, max_body: int = 16 << 20):
        self.meta = meta
        self.fields = fields
        self.names = [f.name for f in fields]
        self.log = log
        self.metrics = metrics
        self.max_rows = max_rows
        self.max_body = max_body
        #: the parser of bodies of numbers (None when a feature is not a number)
        self.numbers = Numbers.of(fields, max_rows)
        self.predictor: Any = None
        #: worker processes of this server, and the numeric threads each may use
        self.workers, self.threads = 1, 1
        #: with several workers: whether all of them have loaded the model
        self.peers: Callable[[], bool] | None = None
        self.started = time.time()
        self.ready_at: float | None = None
        self.metadata = {
            "pipeline": meta.pipeline, "model_version": meta.version, "task": meta.task,
            "run_id": meta.run_id, "data_hash": meta.data_hash, "git_commit": meta.git_commit,
            "spec_hash": meta.spec_hash, "sha256": meta.sha256, "created_at": meta.created_at,
            "build_time": os.environ.get("CD4ML_BUILD_TIME") or None,
            "image": os.environ.get("CD4ML_IMAGE") or None,
            "signature": meta.signature, "format": meta.format}
        self.routes: dict[str, dict[str, Callable[[Request], tuple[int, str, bytes]]]] = {
            "/predict": {"POST": self.predict}, "/health": {"GET": self.health},
            "/ready": {"GET": self.ready}, "/metadata": {"GET": self.get_metadata},
            "/metrics": {"GET": self.get_metrics}, "/openapi.json": {"GET": self.openapi}}
        self._openapi: bytes | None = None
        #: what every answer of /predict ends with, but for the request id
        self._answer_tail = "".join((
            ',"pipeline":', json.dumps(meta.pipeline), ',"model_version":',
            json.dumps(meta.version), ',"request_id":')).encode()

    # ------------------------------------------------------------------------------ endpoints

    def health(self, request: Request) -> tuple[int, str, bytes]:
        return 200, JSON, b'{"status":"ok"}'

    def all_loaded(self) -> bool:
        """This worker has its model, and so have its peers (a worker still loading would
        answer 503 to a request the load balancer sent it after /ready said 200)."""
        return self.predictor is not None and (self.peers is None or self.peers())

    def ready(self, request: Request) -> tuple[int, str, bytes]:
        if not self.all_loaded():
            return 503, JSON, b'{"status":"loading"}'
        return 200, JSON, b'{"status":"ready"}'

    def get_metadata(self, request: Request) -> tuple[int, str, bytes]:
        body = {**self.metadata, "ready": self.all_loaded(),
                "server": {"started_at": _iso(self.started),
                           "ready_at": _iso(self.ready_at) if self.ready_at else None,
                           "pid": os.getpid(), "workers": self.workers,
                           "threads": self.threads,
                           **_runtime(self.predictor),
                           "forest_shortcut": bool(self.predictor and self.predictor.shortcut),
                           "single_call": bool(self.predictor and self.predictor.single_call),
                           "prediction_log": self.log.target}}
        return 200, JSON, json.dumps(body, default=str).encode()

    def get_metrics(self, request: Request) -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render().encode()

    def openapi(self, request: Request) -> tuple[int, str, bytes]:
        if self._openapi is None:
            from cd4ml.serve.openapi import document

            classes = self.meta.signature.get("classes")
            self._openapi = json.dumps(document(self.fields, self.meta.pipeline,
                                                self.meta.version, self.meta.task,
                                                classes, self.max_rows)).encode()
        return 200, JSON, self._openapi

    def predict(self, request: Request) -> tuple[int, str, bytes]:
        predictor = self.predictor
        if predictor is None:
            raise schema.RequestError(503, "the model is still loading; retry when GET /ready "
                                      "answers 200")
        try:
            batch = (self.numbers and self.numbers.parse(request.body)
                     or schema.parse(schema.decode(request.body), self.fields, self.max_rows))
            try:
                result = predictor.predict(batch.rows, batch.matrix)
            except (ValueError, TypeError, OverflowError) as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise schema.RequestError(422, f"the model refused the input: {first}") from None
        except schema.RequestError as e:
            # monitoring counts refused requests over its window from the log
            self.log.refuse(request.when, request.id, e.status, e.message)
            raise
        # the probabilities are encoded once, for the answer and the log alike
        probabilities = result.probabilities_json()
        predictions = jsontext.values(result.predictions)
        self.log.record(request.when, request.id, self.names, batch.rows, predictions,
                        probabilities)
        self.metrics.predicted(result.predictions if predictor.classifier
                               else [None] * len(result.predictions))
        return 200, JSON, b"".join((b'{"predictions":', predictions, b',"probabilities":',
                                    probabilities, self._answer_tail,
                                    json.dumps(request.id).encode(), b"}"))


class Request:
    """What an endpoint gets: the request id, the raw body, and when it arrived (Unix time)."""

    __slots__ = ("body", "id", "when")

    def __init__(self, request_id: str, body: bytes, when: float):
        self.id = request_id
        self.body = body
        self.when = when


def _runtime(predictor: Any) -> dict[str, Any]:
    """What serves the model (``sklearn`` | ``onnx``; None while loading) and, when compiled,
    the parity rule the build held it to (``compiled.json``'s tolerance and what it measured)."""
    if predictor is None:
        return {"runtime": None, "parity": None}
    report = getattr(predictor, "report", None) if predictor.runtime == "onnx" else None
    parity = None if report is None else {
        "tolerance": report.get("tolerance"), "rule": report.get("rule"),
        "max_abs_diff": report.get("max_abs_diff"), "rows_checked": report.get("rows_checked")}
    return {"runtime": predictor.runtime, "parity": parity}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
