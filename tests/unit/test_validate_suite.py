"""Loading GE 1.x suite files strictly, and running a suite on a frame (real great-expectations)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cd4ml.errors import SpecError
from cd4ml.stages.validate import load_suite, run_suite


def _suite_file(tmp_path: Path, expectations: list, **extra) -> Path:
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "t", "expectations": expectations, **extra}, indent=2))
    return path


def exp(kind: str, **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs}


def test_example_suites_load_with_every_expectation(pipelines_dir):
    for name, count in (("wine", 15), ("diabetes", 14)):
        raw = json.loads((pipelines_dir / "expectations" / f"{name}.json").read_text())
        suite = load_suite(pipelines_dir / "expectations" / f"{name}.json")
        assert suite.name == name and len(suite.expectations) == len(raw["expectations"]) == count


def test_a_suite_written_by_great_expectations_round_trips(tmp_path):
    import great_expectations as gx

    written = gx.ExpectationSuite(name="rt", expectations=[
        gx.expectations.ExpectColumnValuesToBeBetween(column="a", min_value=0, max_value=1, mostly=0.9),
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
    ])
    path = tmp_path / "rt.json"
    path.write_text(json.dumps(written.to_json_dict()))
    suite = load_suite(path)
    assert suite.name == "rt"
    assert [e.configuration.to_json_dict() for e in suite.expectations] == \
        [e.configuration.to_json_dict() for e in written.expectations]


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x",\n "expectations": [\n  {"type": "expect_x",}\n ]}')
    with pytest.raises(SpecError, match=r"bad\.json:3: malformed JSON"):
        load_suite(path)


@pytest.mark.parametrize(("entries", "message"), [
    ([exp("expect_column_values_to_not_be_null", column="a"), exp("expect_column_to_be_purple", column="a")],
     r"suite\.json: expectations\[1\] \(expect_column_to_be_purple\): unknown expectation type"),
    ([exp("expect_column_values_to_be_between", column="a", min_value="low")],
     r"expectations\[0\] \(expect_column_values_to_be_between\): invalid kwargs: min_value"),
    ([exp("expect_column_values_to_be_between", min_value=1)],
     r"expectations\[0\] \(expect_column_values_to_be_between\): invalid kwargs: column: field required"),
    ([exp("expect_column_values_to_not_be_null", column="a", colour="red")],
     r"invalid kwargs: colour: extra fields not permitted"),
    ([{"expectation_type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}],
     r"expectations\[0\]: 'expectation_type' is great-expectations 0.x's key; 1.x suites call it 'type'"),
    ([{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}, "colour": 1}],
     r"expectations\[0\] \(expect_column_values_to_not_be_null\): got an unexpected keyword argument 'colour'"),
    (["expect_column_values_to_not_be_null"], r"expectations\[0\]: expected an object"),
])
def test_bad_expectations_are_spec_errors_naming_the_expectation(tmp_path, entries, message):
    with pytest.raises(SpecError, match=message) as info:
        load_suite(_suite_file(tmp_path, entries))
    assert "\n" not in str(info.value)


def test_not_a_suite(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[]")
    with pytest.raises(SpecError, match="not a Great Expectations suite"):
        load_suite(path)
    with pytest.raises(SpecError, match="unexpected keyword argument 'colour'"):
        load_suite(_suite_file(tmp_path, [], colour="red"))
    with pytest.raises(SpecError, match="no such expectation suite"):
        load_suite(tmp_path / "absent.json")


def test_run_suite_reports_every_expectation_in_suite_order(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0, None, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0],
                          "c": ["x", "y", "x", "z", "x", "x", "x", "x", "x"]})
    suite = load_suite(_suite_file(tmp_path, [
        exp("expect_column_values_to_be_in_set", column="c", value_set=["x", "y"]),
        exp("expect_table_row_count_to_be_between", min_value=1, max_value=5),
        exp("expect_column_values_to_be_between", column="a", min_value=0),
        exp("expect_column_values_to_not_be_null", column="a"),
        exp("expect_column_mean_to_be_between", column="a", min_value=0),
        exp("expect_column_values_to_be_between", column="gone", min_value=0),
        exp("expect_column_values_to_be_in_set", column="c", value_set=["x", "y", "z"]),
    ]))
    out = run_suite(suite, frame)
    assert [(o.expectation, o.column) for o in out] == [
        ("expect_column_values_to_be_in_set", "c"),
        ("expect_table_row_count_to_be_between", None),
        ("expect_column_values_to_be_between", "a"),
        ("expect_column_values_to_not_be_null", "a"),
        ("expect_column_mean_to_be_between", "a"),
        ("expect_column_values_to_be_between", "gone"),
        ("expect_column_values_to_be_in_set", "c"),
    ]
    assert [o.success for o in out] == [False, False, False, False, False, False, True]
    in_set, rows, between, nulls, mean, gone, ok = out
    assert in_set.unexpected_count == 1 and in_set.unexpected_examples == ["z"]
    assert in_set.kwargs == {"column": "c", "value_set": ["x", "y"]}
    assert rows.observed == 9 and rows.unexpected_count is None
    # six values below 0, at most five examples; the missing value is not checked
    assert between.unexpected_count == 6 and between.unexpected_examples == [-1.0, -2.0, -3.0, -4.0, -5.0]
    assert between.observed == "6/8 unexpected (75%)"
    assert nulls.unexpected_count == 1 and nulls.unexpected_examples == [None]
    assert mean.observed == pytest.approx(-18 / 8)
    assert gone.observed == "column 'gone' is missing from the data" and gone.unexpected_examples == []
    assert ok.observed == "0/9 unexpected (0%)" and ok.unexpected_count == 0
    assert nulls.observed == "1/9 unexpected (11.1%)"
    json.dumps([o.__dict__ for o in out])  # plain JSON values throughout


def test_run_suite_does_not_print(tmp_path, capfd):
    suite = load_suite(_suite_file(tmp_path, [exp("expect_column_values_to_not_be_null", column="a")]))
    run_suite(suite, pd.DataFrame({"a": [1, 2]}))
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
