"""Server metrics: Prometheus text format, histograms, and counts shared by worker processes."""

from __future__ import annotations

import os
import re

from cd4ml.serve.app import ENDPOINTS
from cd4ml.serve.metrics import Layout, Metrics, shared

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? '
                    r"(-?[0-9.e+-]+|\+Inf|NaN)$")


def parse(text: str) -> dict[str, float]:
    """A strict reading of the text format: every line a comment or a well-formed sample."""
    assert text.endswith("\n")
    samples = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram")
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in types or base in types, f"{m.group(1)} has no # TYPE"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


def metrics(**kw) -> Metrics:
    return Metrics(Layout(ENDPOINTS, ["0", "1", "true"]), {"pipeline": "wine", "version": "3"}, **kw)


def test_counts_by_endpoint_status_and_class_in_the_text_format():
    m = metrics()
    m.observe("/predict", 200, 0.0007)
    m.observe("/predict", 200, 0.003)
    m.observe("/predict", 422, 0.0001)
    m.observe("/nowhere", 404, 0.0001)
    m.observe("/health", 299, 0.0001)  # a status the layout does not list
    m.predicted([0, 1, 1, True, "unheard-of"])
    s = parse(m.render())
    assert s['cd4ml_model_info{pipeline="wine",version="3"}'] == 1
    assert s['cd4ml_http_requests_total{endpoint="/predict",status="200"}'] == 2
    assert s['cd4ml_http_requests_total{endpoint="/predict",status="422"}'] == 1
    assert s['cd4ml_http_requests_total{endpoint="other",status="404"}'] == 1
    assert s['cd4ml_http_requests_total{endpoint="/health",status="other"}'] == 1
    assert 'cd4ml_http_requests_total{endpoint="/ready",status="200"}' not in s
    bucket = 'cd4ml_http_request_duration_seconds_bucket{endpoint="/predict",le="%s"}'
    assert s[bucket % "0.0005"] == 1 and s[bucket % "0.001"] == 2 and s[bucket % "0.005"] == 3
    assert s[bucket % "+Inf"] == 3
    assert s['cd4ml_http_request_duration_seconds_count{endpoint="/predict"}'] == 3
    assert abs(s['cd4ml_http_request_duration_seconds_sum{endpoint="/predict"}'] - 0.0038) < 1e-12
    assert s['cd4ml_predictions_total{class="1"}'] == 2
    assert s['cd4ml_predictions_total{class="true"}'] == 1
    assert s['cd4ml_predictions_total{class="other"}'] == 1
    assert s["cd4ml_prediction_rows_total"] == 5


def test_histogram_buckets_are_cumulative():
    m = metrics()
    for seconds in (0.0001, 0.002, 0.02, 0.2, 2.0, 20.0):
        m.observe("/predict", 200, seconds)
    s = parse(m.render())
    counts = [v for k, v in s.items() if k.startswith("cd4ml_http_request_duration_seconds_bucket")]
    assert counts == sorted(counts) and counts[-1] == 6


def test_label_values_are_escaped():
    m = Metrics(Layout(ENDPOINTS, []), {"pipeline": 'a"b\\c\nd'})
    assert 'cd4ml_model_info{pipeline="a\\"b\\\\c\\nd"} 1' in m.render()
    parse(m.render())


def test_workers_add_to_one_shared_total_across_processes():
    layout = Layout(ENDPOINTS, ["0"])
    memory = shared(layout, 2)
    pid = os.fork()
    if pid == 0:  # worker 1, in its own process
        try:
            child = Metrics(layout, {}, memory, worker=1, workers=2)
            for _ in range(5):
                child.observe("/predict", 200, 0.001)
            child.predicted([0, 0])
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    parent = Metrics(layout, {}, memory, worker=0, workers=2)
    parent.observe("/predict", 200, 0.001)
    parent.predicted([0])
    assert parent.value("requests", "/predict", "200") == 6
    assert parent.value("predictions", "0") == 3
    assert parent.value("rows") == 3
    s = parse(parent.render())
    assert s['cd4ml_http_requests_total{endpoint="/predict",status="200"}'] == 6


def test_a_regressor_has_no_class_counts():
    m = Metrics(Layout(ENDPOINTS, []), {})
    m.predicted([None, None])
    text = m.render()
    assert "cd4ml_predictions_total" not in text and "cd4ml_prediction_rows_total 2" in text
