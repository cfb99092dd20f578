"""Traffic and latency, from a server's Prometheus ``/metrics`` when it answers.

The counters run since the server started (``since``), not over the monitoring window: the
prediction log is what a window is measured on; this is the server's own account beside it.
Latency quantiles are read off the histogram as the upper bound of the bucket they fall in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

_LINE = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Traffic:
    """What one server said about itself."""

    url: str
    model_version: str | None
    since: str | None
    requests: dict[str, int] = field(default_factory=dict)  # /predict answers by status
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def refused(self) -> int:
        return sum(n for s, n in self.requests.items() if s.startswith("4"))


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of the Prometheus text format: (name, labels, value)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line.strip())
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), value))
    return out


def traffic(url: str, text: str) -> Traffic:
    """The /predict traffic of a server from its metrics text."""
    samples = parse(text)
    version = since = None
    for name, labels, value in samples:
        if name == "cd4ml_model_info":
            version = labels.get("model_version") or labels.get("version")
        elif name == "cd4ml_process_start_time_seconds":
            since = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    requests, buckets = predict_counts(samples)
    return Traffic(url, version, since, requests, _quantile(buckets, 0.5), _quantile(buckets, 0.99))


def predict_counts(samples: list[tuple[str, dict[str, str], float]]
                   ) -> tuple[dict[str, int], list[tuple[float, float]]]:
    """/predict's answers by status and its latency histogram (cumulative buckets in seconds,
    sorted by bound), from parsed metrics samples."""
    requests: dict[str, int] = {}
    buckets: list[tuple[float, float]] = []
    for name, labels, value in samples:
        if labels.get("endpoint") != "/predict":
            continue
        if name == "cd4ml_http_requests_total":
            requests[labels.get("status", "?")] = int(value)
        elif name == "cd4ml_http_request_duration_seconds_bucket":
            le = labels.get("le", "+Inf")
            buckets.append((float("inf") if le == "+Inf" else float(le), value))
    return requests, sorted(buckets)


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    for bound, cumulative in buckets:
        if cumulative >= q * total:
            return None if bound == float("inf") else bound * 1000
    return None


def scrape(url: str, timeout: float = 2.0) -> Traffic | None:
    """GET ``url``/metrics; None when nothing answers."""
    from cd4ml.release.targets import http_get

    status, body = http_get(url.rstrip("/") + "/metrics", timeout)
    if status != 200:
        return None
    return traffic(url, body.decode("utf-8", "replace"))
