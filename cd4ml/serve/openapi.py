"""The server's OpenAPI 3.1 description, with the model's own features as the request schema."""

from __future__ import annotations

from typing import Any

from cd4ml.serve.schema import MAX_NUMBER, Field

_TYPES = {"float": "number", "int": "integer", "bool": "boolean", "str": "string"}


def _types(f: Field) -> list[str]:
    kind = _TYPES[f.dtype]
    return [kind, "null"] if f.nullable else [kind]


def _value(f: Field) -> dict[str, Any]:
    types = _types(f)
    out: dict[str, Any] = {"type": types if len(types) > 1 else types[0]}
    if f.dtype in ("float", "int"):
        out.update(minimum=-MAX_NUMBER, maximum=MAX_NUMBER)
    return out


def document(fields: tuple[Field, ...], pipeline: str, version: Any, task: str,
             classes: list | None, max_rows: int = 10_000) -> dict[str, Any]:
    """The OpenAPI document for a server of this model: it accepts what the server accepts
    and refuses what the server refuses (schemathesis checks both ways)."""
    names = [f.name for f in fields]
    width = len(names)
    record = {"type": "object", "additionalProperties": False, "required": names,
              "properties": {f.name: _value(f) for f in fields}}
    # JSON Schema cannot say "all lists of one length", so the document describes one row per
    # list: it must never accept a body the server refuses (the server also takes longer
    # lists of equal length; the records and split forms are the way to send many rows)
    columnar = {"type": "object", "additionalProperties": False, "required": names,
                "description": "one list per feature, all of the same length (described for "
                               "one row; use instances or columns+data for many)",
                "properties": {f.name: {"type": "array", "minItems": 1, "maxItems": 1,
                                        "items": _value(f)} for f in fields}}
    any_value: dict[str, Any] = {"type": sorted({t for f in fields for t in _types(f)})}
    if any(f.dtype in ("float", "int") for f in fields):
        any_value.update(minimum=-MAX_NUMBER, maximum=MAX_NUMBER)
    # every feature once, in any order; each row one value per column, in that order
    split: dict[str, Any] = {
        "type": "object", "required": ["columns", "data"],
        "properties": {"columns": {"type": "array", "minItems": width, "maxItems": width,
                                   "uniqueItems": True,
                                   "items": {"type": "string", "enum": names}},
                       "data": {"type": "array", "minItems": 1, "maxItems": max_rows,
                                "items": {"type": "array", "minItems": width,
                                          "maxItems": width, "items": any_value}}}}
    rows = {"type": "array", "minItems": 1, "maxItems": max_rows,
            "items": {"$ref": "#/components/schemas/Record"}}

    def body(key: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"type": "object", "description": description, "required": [key],
                "additionalProperties": False, "properties": {key: schema}}

    prediction = {"type": "string"} if classes and all(isinstance(c, str) for c in classes) else {}
    if task != "classification":
        prediction = {"type": "number"}
    predict_response = {
        "type": "object", "required": ["predictions", "model_version", "request_id"],
        "properties": {
            "predictions": {"type": "array", "items": prediction,
                            "description": "one prediction per input row, in order"},
            "probabilities": {
                "type": ["array", "null"],
                "description": "classifiers: per row, the probability of each class label",
                "items": {"type": "object", "additionalProperties": {"type": "number"}}},
            "pipeline": {"type": "string"},
            "model_version": {"type": ["integer", "null"]},
            "request_id": {"type": "string"}}}
    error = {"type": "object", "required": ["error"],
             "properties": {"error": {"type": "string"},
                            "errors": {"type": "array", "items": {
                                "type": "object", "required": ["message"],
                                "properties": {"row": {"type": ["integer", "null"]},
                                               "field": {"type": ["string", "null"]},
                                               "message": {"type": "string"}}}},
                            "request_id": {"type": "string"}}}
    request_id_header = {"description": "the request id (the client's X-Request-ID, or a new one)",
                         "schema": {"type": "string"}}

    def json_response(description: str, ref: str, headers: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"description": description, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{ref}"}}}}
        if headers:
            out["headers"] = {"X-Request-ID": request_id_header}
        return out

    free = {"type": "object", "additionalProperties": True}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"cd4ml model server: {pipeline}", "version": str(version),
                 "description": f"Predictions of {pipeline} model version {version} ({task})."},
        "paths": {
            "/predict": {"post": {
                "operationId": "predict",
                "summary": "Predict one or many rows",
                "parameters": [{"name": "X-Request-ID", "in": "header", "required": False,
                                "description": "echoed back and written to the prediction "
                                               "log; one the server would not echo (over 200 "
                                               "characters, or not visible ASCII) is replaced "
                                               "by a new one",
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
                "responses": {
                    "200": json_response("predictions", "PredictResponse", headers=True),
                    "400": json_response("the body is not JSON", "Error", headers=True),
                    "413": json_response("the body or the batch is too large", "Error", True),
                    "422": json_response("a row does not match the model's features", "Error",
                                         headers=True),
                    "503": json_response("the model is still loading", "Error", headers=True)}}},
            "/health": {"get": {"operationId": "health", "summary": "Liveness",
                                "responses": {"200": json_response("alive", "Status")}}},
            "/ready": {"get": {"operationId": "ready", "summary": "Readiness: the model is loaded",
                               "responses": {"200": json_response("ready", "Status"),
                                             "503": json_response("loading", "Status")}}},
            "/metadata": {"get": {"operationId": "metadata",
                                  "summary": "The model, its lineage and the image",
                                  "responses": {"200": json_response("metadata", "Metadata")}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "text format 0.0.4",
                                                       "content": {"text/plain": {
                                                           "schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1",
                                                            "content": {"application/json": {
                                                                "schema": free}}}}}},
        },
        "components": {"schemas": {
            "Record": record,
            "PredictRequest": {"oneOf": [
                body("instances", rows, "records: one object per row"),
                body("inputs", {"oneOf": [{"$ref": "#/components/schemas/Record"}, columnar]},
                     "one record, or columnar: one list per feature"),
                {**split, "description": "split: column names, then one list per row",
                 "additionalProperties": False},
                body("dataframe_split", {**split, "additionalProperties": False, "properties": {
                    **split["properties"], "index": {"description": "ignored"}}},
                     "MLflow's split form"),
                body("dataframe_records", rows, "MLflow's records form")]},
            "PredictResponse": predict_response,
            "Error": error,
            "Status": {"type": "object", "required": ["status"],
                       "properties": {"status": {"type": "string"}}},
            "Metadata": {"type": "object", "required": ["pipeline", "model_version", "sha256"],
                         "properties": {"pipeline": {"type": "string"},
                                        "model_version": {"type": ["integer", "null"]},
                                        "sha256": {"type": "string"}},
                         "additionalProperties": True},
        }},
    }
