"""Request parsing and checking of the model server: pure functions, no sockets."""

from __future__ import annotations

import json

import pytest

from cd4ml.serve.schema import Field, RequestError, decode, fields_of, label_key, parse

FIELDS = (Field("x", "float", False), Field("n", "int", False), Field("flag", "bool", False),
          Field("city", "str", True))


def body(doc) -> bytes:
    return json.dumps(doc).encode()


def error_of(doc, fields=FIELDS, max_rows=10_000) -> RequestError:
    with pytest.raises(RequestError) as e:
        parse(doc, fields, max_rows)
    return e.value


ROW = {"x": 1.5, "n": 2, "flag": True, "city": "Oslo"}
EXPECTED = [1.5, 2, True, "Oslo"]


@pytest.mark.parametrize("doc", [
    {"instances": [ROW, {**ROW, "city": None}]},
    {"dataframe_records": [ROW, {**ROW, "city": None}]},
    {"inputs": {"x": [1.5, 1.5], "n": [2, 2], "flag": [True, True], "city": ["Oslo", None]}},
    {"columns": ["city", "x", "n", "flag"], "data": [["Oslo", 1.5, 2, True], [None, 1.5, 2, True]]},
    {"dataframe_split": {"columns": ["x", "n", "flag", "city"],
                         "data": [[1.5, 2, True, "Oslo"], [1.5, 2, True, None]]}},
])
def test_every_form_gives_the_same_rows_in_signature_order(doc):
    assert parse(doc, FIELDS).rows == [EXPECTED, [1.5, 2, True, None]]


def test_a_single_record_under_inputs_is_one_row():
    assert parse({"inputs": ROW}, FIELDS).rows == [EXPECTED]


def test_integral_numbers_are_ints_and_ints_are_floats():
    rows = parse({"instances": [{**ROW, "n": 3.0, "x": 7}]}, FIELDS).rows
    assert rows == [[7, 3, True, "Oslo"]] and type(rows[0][1]) is int


@pytest.mark.parametrize("field,value,words", [
    ("x", "1.5", "must be a number, not a string"),
    ("x", True, "must be a number, not a boolean"),
    ("x", None, "must not be null"),
    ("n", 2.5, "must be an integer, not 2.5"),
    ("n", "2", "must be an integer, not a string"),
    ("flag", 1, "must be true or false, not a number"),
    ("city", 3, "must be a string, not a number"),
    ("x", [1], "must be a number, not a list"),
    ("x", float("inf"), "must be a finite number"),
    ("n", float("-inf"), "must be an integer, not -inf"),
])
def test_a_wrong_value_is_422_naming_row_and_field(field, value, words):
    e = error_of({"instances": [ROW, {**ROW, field: value}]})
    assert e.status == 422
    assert e.message.startswith(f"row 1: field '{field}' {words}")
    assert e.errors == [{"row": 1, "field": field, "message": e.message}]


def test_missing_and_unknown_fields_are_both_named():
    row = {k: v for k, v in ROW.items() if k != "n"} | {"colour": "red"}
    e = error_of({"instances": [row]})
    assert e.status == 422
    messages = [x["message"] for x in e.errors]
    assert "row 0: field 'n' is missing" in messages
    assert any(m.startswith("row 0: field 'colour' is not a feature of this model") for m in messages)
    assert "(and 1 more problem(s))" in e.message


def test_nullable_fields_must_still_be_present():
    row = {k: v for k, v in ROW.items() if k != "city"}
    assert error_of({"instances": [row]}).message == "row 0: field 'city' is missing"


def test_errors_are_capped():
    e = error_of({"instances": [{"x": "bad"}] * 100})
    assert len(e.errors) == 20


@pytest.mark.parametrize("doc,words", [
    ([ROW], "the body must be a JSON object, not a list"),
    ({}, "exactly one of 'instances', 'inputs', 'columns'+'data' (found none)"),
    ({"instances": [ROW], "inputs": ROW}, "(found instances, inputs)"),
    ({"instances": [ROW], "extra": 1}, "unexpected top-level key(s) 'extra'"),
    ({"instances": ROW}, "'instances' must be a list of objects, not an object"),
    ({"instances": []}, "no rows to predict"),
    ({"instances": [1]}, "row 0 must be an object, not a number"),
    ({"inputs": 3}, "'inputs' must be an object, not a number"),
    ({"inputs": {"x": [1.0], "n": 2, "flag": [True], "city": ["a"]}}, "mixes lists"),
    ({"inputs": {"x": [1.0, 2.0], "n": [2], "flag": [True], "city": ["a"]}}, "differ in length"),
    ({"columns": ["x", "n", "flag"], "data": [[1.0, 2, True]]}, "field 'city' is missing from columns"),
    ({"columns": ["x", "n", "flag", "city", "x"], "data": []}, "field 'x' appears twice"),
    ({"columns": ["x", "n", "flag", "city"], "data": [[1.0, 2, True]]},
     "row 0 must be a list of 4 values (one per column), not 3 values"),
    ({"columns": "x", "data": []}, "'columns' must be a list of feature names"),
    ({"dataframe_split": {"columns": ["x"], "data": [], "shape": 1}}, "unexpected key(s) 'shape'"),
])
def test_malformed_bodies_are_422_with_a_clear_message(doc, words):
    e = error_of(doc)
    assert e.status == 422
    assert words in e.message


def test_too_many_rows_is_413():
    e = error_of({"instances": [ROW] * 3}, max_rows=2)
    assert e.status == 413 and "limit is 2" in e.message


@pytest.mark.parametrize("raw,words", [
    (b"", "empty request body"),
    (b"{", "not valid JSON"),
    (b'{"instances": [{"x": NaN}]}', "NaN is not a JSON number"),
    (b'{"x": Infinity}', "Infinity is not a JSON number"),
    (b"\xff\xfe{}", "not valid JSON"),
])
def test_bodies_that_are_not_json_are_400(raw, words):
    with pytest.raises(RequestError) as e:
        decode(raw)
    assert e.value.status == 400 and words in e.value.message


def test_numbers_too_large_for_a_double_are_refused_by_name():
    doc = decode(b'{"instances": [{"x": 1e999, "n": 1, "flag": true, "city": null}]}')
    assert error_of(doc).message == "row 0: field 'x' must be a finite number (it overflows a double)"


def test_decode_reads_json():
    assert decode(body({"inputs": ROW})) == {"inputs": ROW}


def test_fields_of_reads_the_signature_and_rejects_what_it_cannot_check():
    sig = {"inputs": [{"name": "a", "dtype": "float", "nullable": True}, {"name": "b", "dtype": "str"}]}
    assert fields_of(sig) == (Field("a", "float", True), Field("b", "str", False))
    with pytest.raises(ValueError, match="dtype 'datetime' is not one of float, int, bool, str"):
        fields_of({"inputs": [{"name": "a", "dtype": "datetime"}]})
    with pytest.raises(ValueError, match="empty"):
        fields_of({"inputs": []})
    with pytest.raises(ValueError, match=r"inputs\[0\] lacks a name"):
        fields_of({"inputs": [{"dtype": "int"}]})


def test_label_keys_are_json_spellings():
    assert [label_key(v) for v in (0, "a", True, False, 1.5)] == ["0", "a", "true", "false", "1.5"]
