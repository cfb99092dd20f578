"""The analysis of a candidate against the stable version on real evidence: prediction logs
written and /metrics answered by real ``python -m cd4ml.serve`` processes serving real model
versions (a good retrain and one trained on shuffled labels), fed the same requests."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from cd4ml.release.analysis import Observation, ServerCounts, Verdict, analyse, read_logs, scrape
from cd4ml.release.strategy import AnalysisSpec
from cd4ml.watch.window import Window, stamp
from tests.canary_world import input_rows, train_models
from tests.integration.test_serve import Server, serve_argv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Servers of v1 (stable), v2 (good) and v3 (shuffled labels), each logging to its own file,
    after 150 single-row requests sent to all three with the same X-Request-ID, and 10 bad
    bodies sent to v3 only (its 4xx share rises)."""
    import os

    from cd4ml.spec import load_spec
    from cd4ml.store import Store

    tmp = tmp_path_factory.mktemp("analysis")
    os.environ["CD4ML_ARTIFACTS"] = str(tmp / "artifacts")
    try:
        spec = load_spec(ROOT / "pipelines" / "wine.yaml")
        with Store(f"sqlite:///{tmp / 'store.db'}") as store:
            models = train_models(spec, store, tmp)
    finally:
        del os.environ["CD4ML_ARTIFACTS"]
    servers, logs = {}, {}
    for v, m in models.items():
        logs[v] = tmp / f"v{v}.jsonl"
        servers[v] = Server(serve_argv(Path(m.artifact_uri)), env={
            "CD4ML_PREDICTION_LOG": str(logs[v]), "CD4ML_MODEL_SHA256": m.sha256})
    for s in servers.values():
        s.ready()
    before = {v: scrape(s.url) for v, s in servers.items()}
    start = stamp(datetime.now(UTC) - timedelta(seconds=1))
    rows = random.Random(3).choices(input_rows(spec, models[1]), k=150)
    with requests.Session() as http:
        for row in rows:
            rid = uuid.uuid4().hex
            for s in servers.values():
                r = http.post(f"{s.url}/predict", json={"instances": [row]},
                              headers={"X-Request-ID": rid})
                assert r.status_code == 200, r.text
        for _ in range(10):
            assert http.post(f"{servers[3].url}/predict", data=b"{not json").status_code == 400
    after = {v: scrape(s.url) for v, s in servers.items()}
    for s in servers.values():
        assert s.stop() == 0  # the log is complete once the server stopped cleanly
    window = Window(start, stamp(datetime.now(UTC)))
    records = {}
    for v in models:
        records.update(read_logs([str(logs[v])], spec.name, window, [v]))
    counts = {v: after[v].since(before[v]) for v in models}
    return spec, models, records, counts, logs


def _obs(served, version, with_counts=True):
    _, _, records, counts, _ = served
    return Observation(version, records[version], counts[version] if with_counts else None)


def _check(analysis, name):
    return next(c for c in analysis.checks if c.name == name)


def test_a_good_retrain_passes_on_mirrored_requests(served):
    a = analyse("classification", _obs(served, 1), _obs(served, 2), AnalysisSpec(), mirrored=True)
    assert a.passed, a.summary()
    assert a.rows == {"stable": 150, "candidate": 150, "matched": 150}
    assert _check(a, "agreement").value >= 0.9
    assert _check(a, "shift").verdict == Verdict.PASSED
    assert _check(a, "error_rate").value == 0
    assert _check(a, "p99_latency").verdict == Verdict.PASSED
    # plain JSON for the store and GitHub
    assert json.loads(json.dumps(a.as_dict()))["passed"] is True


def test_a_model_trained_on_shuffled_labels_fails_on_agreement(served):
    a = analyse("classification", _obs(served, 1), _obs(served, 3), AnalysisSpec(), mirrored=True)
    assert not a.passed
    agreement = _check(a, "agreement")
    assert agreement.verdict == Verdict.FAILED and agreement.value < 0.7, agreement
    assert agreement.threshold == 0.9 and "rows given the same label" in agreement.detail
    assert "agreement" in a.summary() and a.summary().startswith("analysis FAILED")


def test_its_refused_requests_fail_client_errors_against_stable(served):
    a = analyse("classification", _obs(served, 1), _obs(served, 3), AnalysisSpec(), mirrored=True)
    c = _check(a, "client_errors")
    # 10 of its 160 /predict answers were 400, none of the stable version's
    assert c.verdict == Verdict.FAILED and c.value == pytest.approx(10 / 160)
    assert _check(a, "error_rate").verdict == Verdict.PASSED


def test_comparable_requests_when_not_mirrored(served):
    """A canary's two versions answer different requests: rows with equal inputs compare."""
    _, _, records, counts, _ = served
    stable = Observation(1, records[1][:75], counts[1])
    good = Observation(2, records[2][75:], counts[2])
    bad = Observation(3, records[3][75:], counts[3])
    a = analyse("classification", stable, good, AnalysisSpec(), mirrored=False)
    assert a.rows["matched"] > 0 and _check(a, "agreement").verdict == Verdict.PASSED, a.summary()
    b = analyse("classification", stable, bad, AnalysisSpec(), mirrored=False)
    assert _check(b, "agreement").verdict == Verdict.FAILED, b.summary()


def test_too_little_traffic_fails_and_missing_metrics_are_inconclusive(served):
    a = analyse("classification", _obs(served, 1, False), _obs(served, 2, False),
                AnalysisSpec(min_requests=1000), mirrored=True)
    assert _check(a, "traffic").verdict == Verdict.FAILED and not a.passed
    assert _check(a, "p99_latency").verdict == Verdict.INCONCLUSIVE
    # without /metrics the error rates are read from the log's refused lines
    assert _check(a, "error_rate").verdict == Verdict.PASSED


def test_a_shadow_that_met_no_mirrored_request_fails_on_traffic(served):
    """A front that sent real requests to the shadow instead of copies: the candidate's rows
    share no request id with stable's, so nothing was compared and nothing may be promoted."""
    _, _, records, _, _ = served
    stable = Observation(1, records[1][:75])
    unmirrored = Observation(2, records[2][75:])
    a = analyse("classification", stable, unmirrored, AnalysisSpec(), mirrored=True)
    traffic = _check(a, "traffic")
    assert traffic.verdict == Verdict.FAILED and traffic.value == 0 and not a.passed, a.summary()
    assert "mirrored rows" in traffic.detail


def test_shift_of_a_constant_model(served):
    """A candidate that answers one label whatever it is asked: its prediction distribution
    has moved (PSI), even where the agreement is not measured."""
    _, _, records, _, _ = served
    constant = tuple({**r, "predictions": [0] * len(r["predictions"])} for r in records[2])
    a = analyse("classification", _obs(served, 1, False), Observation(2, constant),
                AnalysisSpec(min_agreement=0.0), mirrored=True)
    assert _check(a, "shift").verdict == Verdict.FAILED and _check(a, "shift").value > 0.2


def test_regression_relative_difference():
    rec = lambda rid, p: {"request_id": rid, "inputs": [{"x": 1}], "predictions": [p]}
    stable = Observation(1, tuple(rec(str(i), 100.0 + i) for i in range(30)))
    near = Observation(2, tuple(rec(str(i), 101.0 + i) for i in range(30)))
    far = Observation(3, tuple(rec(str(i), 150.0 + i) for i in range(30)))
    ok = analyse("regression", stable, near, AnalysisSpec(), mirrored=True)
    assert _check(ok, "relative_difference").verdict == Verdict.PASSED
    off = analyse("regression", stable, far, AnalysisSpec(), mirrored=True)
    assert _check(off, "relative_difference").verdict == Verdict.FAILED


def test_counts_since_an_earlier_scrape():
    text = ('cd4ml_http_requests_total{endpoint="/predict",status="200"} 90\n'
            'cd4ml_http_requests_total{endpoint="/predict",status="500"} 10\n'
            'cd4ml_http_request_duration_seconds_bucket{endpoint="/predict",le="0.01"} 99\n'
            'cd4ml_http_request_duration_seconds_bucket{endpoint="/predict",le="0.1"} 100\n'
            'cd4ml_http_request_duration_seconds_bucket{endpoint="/predict",le="+Inf"} 100\n')
    earlier = ('cd4ml_http_requests_total{endpoint="/predict",status="200"} 50\n'
               'cd4ml_http_request_duration_seconds_bucket{endpoint="/predict",le="0.01"} 50\n'
               'cd4ml_http_request_duration_seconds_bucket{endpoint="/predict",le="+Inf"} 50\n')
    now, before = ServerCounts.parse(text), ServerCounts.parse(earlier)
    d = now.since(before)
    assert d.total == 50 and d.share("5") == pytest.approx(0.2)
    assert d.p99_ms == 100.0  # 49 of 50 under 10 ms, the 50th under 100 ms
    # a restarted server (its counters went down) counts from its start
    assert before.since(now) == before
