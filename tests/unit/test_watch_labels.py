"""Label files: joined to logged predictions by request id, checked as a whole, idempotent."""

from __future__ import annotations

import json

import pytest

from cd4ml.errors import DataError
from cd4ml.watch.labels import LabelsConfig, add_labels


@pytest.fixture
def logged(spec, store, tmp_path):
    """A model version in the store and a log of three single-row predictions by it."""
    run = store.start_run("wine")
    store.register_model("wine", run.id, "classification", "/nowhere", "ab" * 32,
                         {"inputs": [{"name": "alcohol", "dtype": "float"}], "classes": [0, 1, 2]},
                         {})
    log = tmp_path / "p.jsonl"
    log.write_text("".join(json.dumps({
        "time": f"2026-12-01T10:00:0{i}.000000Z", "request_id": f"r{i}", "pipeline": "wine",
        "model_version": 1, "inputs": [{"alcohol": 13.0}], "predictions": [i % 3],
        "probabilities": None}) + "\n" for i in range(3)))
    return log


def add(spec, store, tmp_path, log, text, name="labels.csv", **kw):
    path = tmp_path / name
    path.write_text(text)
    return add_labels(spec, store, LabelsConfig(path, logs=(str(log),), **kw))


def test_labels_are_joined_and_adding_twice_counts_nothing_twice(spec, store, tmp_path, logged):
    first = add(spec, store, tmp_path, logged, "request_id,label,alcohol_level\nr0,0,high\nr1,2,low\n")
    assert (first.rows, first.added, first.already, first.recorded) == (2, 2, 0, True)
    again = add(spec, store, tmp_path, logged, "request_id,label,alcohol_level\nr0,0,high\nr1,2,low\n")
    assert (again.added, again.already, again.problems) == (0, 2, ())
    got = {(x.request_id, x.label, x.slices["alcohol_level"], x.model_version,
            x.prediction_time) for x in store.labels_between("wine", "2026", "2027")}
    assert got == {("r0", 0, "high", 1, "2026-12-01T10:00:00.000000Z"),
                   ("r1", 2, "low", 1, "2026-12-01T10:00:01.000000Z")}


def test_json_lines_with_a_row_and_a_time(spec, store, tmp_path, logged):
    text = ('{"request_id": "r2", "label": 1, "row": 0, "time": "2026-12-02T08:00:00Z"}\n'
            '{"request_id": "r1", "label": "1"}\n')
    result = add(spec, store, tmp_path, logged, text, name="labels.jsonl")
    assert (result.added, result.problems) == (2, ())
    (r2,) = [x for x in store.labels_between("wine", "2026", "2027") if x.request_id == "r2"]
    assert r2.label == 1 and r2.label_time == "2026-12-02T08:00:00.000000Z"


def test_a_bad_file_is_reported_by_kind_and_records_nothing(spec, store, tmp_path, logged):
    text = ("request_id,label\n"
            "r0,0\n"
            "nope-1,1\nnope-2,1\n"  # no such request
            "r1,cat\nr2,7\n"  # not a class of the model
            "r0,0\n"  # given twice
            ",1\n")  # no request id
    result = add(spec, store, tmp_path, logged, text)
    kinds = {p.kind: p for p in result.problems}
    assert {k: p.count for k, p in kinds.items()} == {"unknown": 2, "wrong_type": 2,
                                                      "duplicate": 1, "missing": 1}
    assert kinds["unknown"].examples == ("labels.csv:3 nope-1", "labels.csv:4 nope-2")
    assert kinds["wrong_type"].line.startswith("2 labels of the wrong type, e.g. labels.csv:5 'cat'")
    assert not result.recorded and result.added == 0
    assert list(store.labels_between("wine", "2026", "2027")) == []
    # the valid rows when asked, the rest reported all the same
    partial = add(spec, store, tmp_path, logged, text, skip_invalid=True)
    assert partial.recorded and partial.added == 1 and len(partial.problems) == 4


def test_a_label_contradicting_a_recorded_one_is_a_conflict(spec, store, tmp_path, logged):
    add(spec, store, tmp_path, logged, "request_id,label\nr0,0\n")
    result = add(spec, store, tmp_path, logged, "request_id,label\nr0,1\n")
    assert [(p.kind, p.count) for p in result.problems] == [("conflict", 1)]
    assert [x.label for x in store.labels_between("wine", "2026", "2027")] == [0]


@pytest.mark.parametrize("text,message", [
    ("id,truth\nr0,0\n", "no request_id or label column"),
    ("", "the file is empty"),
    ("request_id,label\n", "no labels in it"),
    ('{"request_id": "r0", "label": 0}\n{"request_id": "r1", "label": 0', None),
])
def test_files_that_fail_as_a_whole(spec, store, tmp_path, logged, text, message):
    name = "labels.jsonl" if text.startswith("{") else "labels.csv"
    if message is None:  # a cut JSON line is a row that cannot be read: nothing is recorded
        result = add(spec, store, tmp_path, logged, text, name=name)
        assert [(p.kind, p.count) for p in result.problems] == [("unreadable", 1)]
        assert not result.recorded
        return
    with pytest.raises(DataError, match=message):
        add(spec, store, tmp_path, logged, text, name=name)


def test_an_unreadable_label_file(spec, store, tmp_path, logged):
    with pytest.raises(DataError, match="cannot read the label file"):
        add_labels(spec, store, LabelsConfig(tmp_path / "missing.csv", logs=(str(logged),)))
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="not UTF-8"):
        add_labels(spec, store, LabelsConfig(tmp_path / "bin.csv", logs=(str(logged),)))
