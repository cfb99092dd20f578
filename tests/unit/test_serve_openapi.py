"""The server's OpenAPI document: a valid OpenAPI 3.1 description that agrees with the parser."""

from __future__ import annotations

import jsonschema
import pytest
from openapi_spec_validator import validate

from cd4ml.serve.openapi import document
from cd4ml.serve.schema import Field, RequestError, parse

FIELDS = (Field("x", "float", False), Field("n", "int", False), Field("city", "str", True))
ROW = {"x": 1.5, "n": 2, "city": None}


@pytest.fixture(scope="module")
def doc():
    return document(FIELDS, "wine", 3, "classification", [0, 1, 2], max_rows=3)


def request_schema(doc) -> dict:
    # refs are to #/components/...: carry the components along in the root
    return {**doc["components"]["schemas"]["PredictRequest"], "components": doc["components"]}


def test_the_document_is_valid_openapi_3_1(doc):
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {"/predict", "/health", "/ready", "/metadata", "/metrics",
                                 "/openapi.json"}
    record = doc["components"]["schemas"]["Record"]
    bounds = {"minimum": -3.4028234663852886e38, "maximum": 3.4028234663852886e38}
    assert record["properties"] == {"x": {"type": "number", **bounds},
                                    "n": {"type": "integer", **bounds},
                                    "city": {"type": ["string", "null"]}}
    assert record["required"] == ["x", "n", "city"] and record["additionalProperties"] is False


def test_a_regressor_document_is_valid_too():
    validate(document(FIELDS, "diabetes", None, "regression", None))


@pytest.mark.parametrize("body", [
    {"instances": [ROW]},
    {"inputs": ROW},
    {"inputs": {"x": [1.0], "n": [1], "city": ["a"]}},
    {"columns": ["x", "n", "city"], "data": [[1.0, 2, "a"]]},
    {"dataframe_split": {"columns": ["x", "n", "city"], "data": [[1.0, 2, None]]}},
    {"dataframe_records": [ROW]},
])
def test_bodies_the_server_accepts_match_the_described_schema(doc, body):
    parse(body, FIELDS)
    jsonschema.validate(body, request_schema(doc), cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("body", [
    {"instances": [{**ROW, "extra": 1}]},
    {"instances": [{"x": 1.0, "n": 2}]},
    {"instances": [{**ROW, "x": "1"}]},
    {"instances": [{**ROW, "n": 2.5}]},
    {"instances": []},
    {"inputs": {**ROW, "x": None}},
    # split forms naming no column, one twice, or rows of the wrong width (issue #12)
    {"columns": [], "data": [[]]},
    {"columns": ["x", "x", "n"], "data": [[1.0, 1.0, 2]]},
    {"columns": ["x", "n"], "data": [[1.0, 2]]},
    {"columns": ["x", "n", "city"], "data": [[1.0, 2]]},
    {"dataframe_split": {"columns": [], "data": [[]]}},
    {"instances": [ROW] * 4},  # over max_rows (3 in this document)
    {"instances": [{**ROW, "x": 1e39}]},  # over a 32-bit float, infinite to a tree model
    {"inputs": {**ROW, "n": -(10**39)}},
    {"inputs": {"x": [1.0, 2.0], "n": [1], "city": ["a"]}},  # columns of unequal length
])
def test_bodies_the_server_refuses_are_outside_the_described_schema(doc, body):
    with pytest.raises(RequestError):
        parse(body, FIELDS, max_rows=3)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, request_schema(doc), cls=jsonschema.Draft202012Validator)
