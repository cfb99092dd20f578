"""The prediction log read back as a stream: bad lines are counted with examples, never fatal,
and never taken for predictions."""

from __future__ import annotations

import json

import pytest

from cd4ml.watch.logread import LogCounts, records
from cd4ml.watch.window import Window, window

WINDOW = Window("2026-12-01T00:00:00.000000Z", "2026-12-02T00:00:00.000000Z")


def line(n: int = 0, pipeline: str = "wine", when: str = "2026-12-01T10:00:00.000000Z",
         **extra) -> str:
    record = {"time": when, "request_id": f"r{n}", "pipeline": pipeline, "model_version": 1,
              "model_sha256": "ab" * 32, "inputs": [{"x": float(n)}], "predictions": [n % 2],
              "probabilities": None, **extra}
    return json.dumps(record, separators=(",", ":")) + "\n"


def read(path, pipeline="wine", span=WINDOW):
    counts = LogCounts()
    got = list(records([path], pipeline, span, counts))
    return got, counts


def test_a_clean_log_streams_every_record(tmp_path):
    log = tmp_path / "p.jsonl"
    log.write_text("".join(line(i) for i in range(5)))
    got, counts = read(log)
    assert [r["request_id"] for r in got] == ["r0", "r1", "r2", "r3", "r4"]
    assert (counts.lines, counts.predictions) == (5, 5)


def test_truncated_last_line_is_counted_not_fatal(tmp_path):
    log = tmp_path / "p.jsonl"
    log.write_text(line(1) + line(2)[:40])  # the server died mid-write
    got, counts = read(log)
    assert [r["request_id"] for r in got] == ["r1"]
    assert counts.truncated == 1 and counts.examples["truncated"] == [f"{log}:2"]
    assert counts.not_json == 0


def test_lines_of_another_pipeline_are_skipped_and_counted(tmp_path):
    log = tmp_path / "p.jsonl"
    log.write_text(line(1) + line(2, pipeline="diabetes") + line(3))
    got, counts = read(log)
    assert [r["request_id"] for r in got] == ["r1", "r3"]
    assert counts.other_pipeline == 1 and counts.examples["other_pipeline"] == [f"{log}:2"]


def test_garbage_and_json_that_is_no_prediction(tmp_path):
    log = tmp_path / "p.jsonl"
    log.write_text("starting server on :8080\n" + line(1) + "\x00\xff not json\n\n"
                   + '{"level": "info", "msg": "ready"}\n' + "[1, 2]\n"
                   + line(2, inputs=[{"x": 1.0}, {"x": 2.0}])  # two inputs, one prediction
                   + line(3))
    got, counts = read(log)
    assert [r["request_id"] for r in got] == ["r1", "r3"]
    assert counts.not_json == 2 and counts.not_prediction == 3
    assert counts.examples["not_json"] == [f"{log}:1", f"{log}:3"]
    assert len(counts.examples["not_prediction"]) == 3


def test_the_window_is_applied_before_and_after_parsing(tmp_path):
    log = tmp_path / "p.jsonl"
    early = line(1, when="2026-11-30T23:59:59.999999Z")
    late = line(2, when="2026-12-02T00:00:00.000001Z")
    # a record whose time is not at the start of the line is parsed, then judged
    moved = json.dumps({"request_id": "r4", "time": "2026-12-03T00:00:00.000000Z",
                        "pipeline": "wine", "model_version": 1, "inputs": [], "predictions": []})
    log.write_text(early + line(3) + late + moved + "\n")
    got, counts = read(log)
    assert [r["request_id"] for r in got] == ["r3"]
    assert counts.outside_window == 3


def test_refused_requests_are_records_of_their_own(tmp_path):
    log = tmp_path / "p.jsonl"
    refused = json.dumps({"time": "2026-12-01T10:00:00.000000Z", "request_id": "bad",
                          "pipeline": "wine", "model_version": 1,
                          "refused": {"status": 422, "error": "row 0: x is missing"}})
    log.write_text(line(1) + refused + "\n")
    got, counts = read(log)
    assert [r["request_id"] for r in got] == ["r1", "bad"]
    assert (counts.predictions, counts.refused) == (1, 1)


def test_an_unreadable_log_is_one_clear_error(tmp_path):
    from cd4ml.errors import DataError

    with pytest.raises(DataError, match="cannot read prediction log .*nope.jsonl"):
        read(tmp_path / "nope.jsonl")


def test_windows_from_options():
    from datetime import UTC, datetime

    from cd4ml.errors import SpecError

    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert window("90m", now=now) == Window("2026-12-03T10:30:00.000000Z",
                                            "2026-12-03T12:00:00.000000Z")
    assert window(start="2026-12-01", end="2026-12-02T06:00:00+01:00", now=now) == Window(
        "2026-12-01T00:00:00.000000Z", "2026-12-02T05:00:00.000000Z")
    for bad in ({"since": "soon"}, {"since": "1h", "start": "2026-12-01"},
                {"start": "2026-12-02", "end": "2026-12-01"}, {"start": "yesterday"}):
        with pytest.raises(SpecError):
            window(**bad, now=now)
