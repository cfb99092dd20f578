"""Prometheus metrics of the model server, rendered in the text exposition format 0.0.4.

Every series is known at start-up (the endpoints, the status codes the server sends, the
model's class labels), so the counts are a fixed array of doubles: one slice per worker
process in a shared memory map. A worker adds only to its own slice, under its own lock, and a
scrape of any worker sums all slices, so ``/metrics`` describes the whole server however many
processes answer on its port.
"""

from __future__ import annotations

import mmap
import threading
import time
from collections.abc import Iterable

from cd4ml.serve.schema import label_key

#: latency histogram upper bounds, seconds
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: statuses the server sends; anything else is counted as "other"
STATUSES = (200, 400, 404, 405, 408, 411, 413, 414, 422, 431, 500, 501, 503, 505)
OTHER = "other"
_KNOWN = frozenset(STATUSES)


class Layout:
    """Where each series lives in a worker's slice of doubles."""

    def __init__(self, endpoints: Iterable[str], classes: Iterable[str]):
        self.endpoints = [*endpoints, OTHER]
        self.statuses = [str(s) for s in STATUSES] + [OTHER]
        self.classes = [*classes, OTHER]
        n = 0
        self.requests: dict[tuple[str, str], int] = {}
        for e in self.endpoints:
            for s in self.statuses:
                self.requests[(e, s)] = n
                n += 1
        # per endpoint: len(BUCKETS) + 1 bucket counts (the last is +Inf), then the sum
        self.latency: dict[str, int] = {}
        for e in self.endpoints:
            self.latency[e] = n
            n += len(BUCKETS) + 2
        self.predictions: dict[str, int] = {}
        for c in self.classes:
            self.predictions[c] = n
            n += 1
        self.rows = n
        self.size = n + 1


def shared(layout: Layout, workers: int) -> mmap.mmap:
    """Zeroed anonymous shared memory for ``workers`` slices; create it before forking."""
    return mmap.mmap(-1, max(1, layout.size * 8 * workers))


class Metrics:
    """Request counts by endpoint and status, a latency histogram, predictions by class."""

    def __init__(self, layout: Layout, info: dict[str, str] | None = None,
                 memory: mmap.mmap | None = None, worker: int = 0, workers: int = 1):
        self.layout = layout
        self.info = dict(info or {})
        self.started = time.time()
        self._memory = memory if memory is not None else shared(layout, 1)
        self._all = memoryview(self._memory).cast("d")
        self._workers = workers if memory is not None else 1
        base = layout.size * (worker if memory is not None else 0)
        self._mine = self._all[base:base + layout.size]
        self._lock = threading.Lock()

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        lay = self.layout
        i = 0
        for bound in BUCKETS:
            if seconds <= bound:
                break
            i += 1
        if endpoint not in lay.latency:
            endpoint = OTHER
        req = lay.requests[(endpoint, str(status) if status in _KNOWN else OTHER)]
        lat = lay.latency[endpoint]
        mine = self._mine
        with self._lock:
            mine[req] += 1
            mine[lat + i] += 1
            mine[lat + len(BUCKETS) + 1] += seconds

    def predicted(self, labels: list) -> None:
        """Count predicted rows, by class label for classifiers (labels are None for regressors)."""
        lay = self.layout
        mine = self._mine
        with self._lock:
            mine[lay.rows] += len(labels)
            for label in labels:
                if label is not None:
                    mine[lay.predictions.get(label_key(label), lay.predictions[OTHER])] += 1

    def totals(self) -> list[float]:
        """Every series summed over all workers."""
        size = self.layout.size
        out = [0.0] * size
        for w in range(self._workers):
            part = self._all[w * size:(w + 1) * size].tolist()
            for i, v in enumerate(part):
                out[i] += v
        return out

    def value(self, kind: str, *key: str) -> float:
        """One series' total, e.g. ``value("requests", "/predict", "200")``; for tests and tools."""
        index = {"requests": lambda: self.layout.requests[(key[0], key[1])],
                 "predictions": lambda: self.layout.predictions[key[0]],
                 "rows": lambda: self.layout.rows}[kind]()
        return self.totals()[index]

    def render(self) -> str:
        """The Prometheus text format (``text/plain; version=0.0.4``)."""
        lay = self.layout
        t = self.totals()
        out = ["# HELP cd4ml_model_info The model being served (always 1).",
               "# TYPE cd4ml_model_info gauge",
               f"cd4ml_model_info{_labels(self.info)} 1",
               "# HELP cd4ml_process_start_time_seconds Start time of the server, Unix seconds.",
               "# TYPE cd4ml_process_start_time_seconds gauge",
               f"cd4ml_process_start_time_seconds {self.started:.3f}",
               "# HELP cd4ml_http_requests_total HTTP requests answered, by endpoint and status.",
               "# TYPE cd4ml_http_requests_total counter"]
        for (e, s), i in lay.requests.items():
            if t[i]:
                out.append(f"cd4ml_http_requests_total{_labels({'endpoint': e, 'status': s})} "
                           f"{int(t[i])}")
        out += ["# HELP cd4ml_http_request_duration_seconds Time to answer a request, by endpoint.",
                "# TYPE cd4ml_http_request_duration_seconds histogram"]
        for e, base in lay.latency.items():
            counts = t[base:base + len(BUCKETS) + 1]
            if not any(counts):
                continue
            cumulative = 0
            for bound, n in zip((*BUCKETS, None), counts):
                cumulative += int(n)
                le = "+Inf" if bound is None else repr(bound)
                out.append("cd4ml_http_request_duration_seconds_bucket"
                           f"{_labels({'endpoint': e, 'le': le})} {cumulative}")
            total = t[base + len(BUCKETS) + 1]
            out.append(f"cd4ml_http_request_duration_seconds_sum{_labels({'endpoint': e})} "
                       f"{total!r}")
            out.append(f"cd4ml_http_request_duration_seconds_count{_labels({'endpoint': e})} "
                       f"{cumulative}")
        out += ["# HELP cd4ml_prediction_rows_total Rows predicted.",
                "# TYPE cd4ml_prediction_rows_total counter",
                f"cd4ml_prediction_rows_total {int(t[lay.rows])}"]
        if len(lay.classes) > 1:
            out += ["# HELP cd4ml_predictions_total Rows predicted, by predicted class.",
                    "# TYPE cd4ml_predictions_total counter"]
            out += [f"cd4ml_predictions_total{_labels({'class': c})} {int(t[i])}"
                    for c, i in lay.predictions.items() if c != OTHER or t[i]]
        return "\n".join(out) + "\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    parts = []
    for k, v in labels.items():
        v = str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        parts.append(f'{k}="{v}"')
    return "{" + ",".join(parts) + "}"
