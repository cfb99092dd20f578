"""Request bodies of ``POST /predict``: parsing and checking against the model's input signature.

Pure functions, no sockets and no numpy, so that every rule is unit-testable and the request
path does nothing it does not need. Accepted bodies (a JSON object):

``{"instances": [{"f1": 1.0, "f2": "a"}, ...]}``     records, one object per row
``{"inputs": {"f1": 1.0, "f2": "a"}}``                one record
``{"inputs": {"f1": [1.0, 2.0], "f2": ["a", "b"]}}``  columnar, one list per feature
``{"columns": ["f1", "f2"], "data": [[1.0, "a"]]}``   split: column names, then row lists
``{"dataframe_split": {...}}`` and ``{"dataframe_records": [...]}`` are MLflow's names for the
split and records forms, accepted so that clients of an MLflow server work unchanged.

Every feature of the signature must be present in every row, and nothing else may be: a typo'd
name would otherwise be silently ignored. Types are JSON's: ``float`` takes any number, ``int``
takes integers (and integral numbers like ``3.0``), ``bool`` takes ``true``/``false``, ``str``
takes strings; ``null`` only where the signature says the feature is nullable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from math import isfinite
from operator import itemgetter
from typing import Any

#: at most this many problems are listed in one error response
MAX_ERRORS = 20


class RequestError(Exception):
    """The request cannot be served as sent; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


@dataclass(frozen=True)
class Field:
    name: str
    dtype: str  # float | int | bool | str
    nullable: bool


@dataclass(frozen=True)
class Batch:
    """Checked rows: one list per row, values in signature order, ``None`` where null; and
    when :mod:`cd4ml.serve.numeric` parsed them, their float64 matrix (numpy) in that order."""

    rows: list[list[Any]]
    matrix: Any = None


def label_key(label: Any) -> str:
    """A class label as a JSON object key (probabilities are keyed by it): ``true``, ``1``, ``a``."""
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


def fields_of(signature: dict) -> tuple[Field, ...]:
    """The signature's inputs as :class:`Field` s; raises ``ValueError`` naming a bad entry."""
    out = []
    for i, entry in enumerate(signature.get("inputs") or []):
        try:
            name, dtype = str(entry["name"]), str(entry["dtype"])
        except (KeyError, TypeError):
            raise ValueError(f"signature.inputs[{i}] lacks a name or dtype") from None
        if dtype not in _CONVERTERS:
            raise ValueError(f"signature.inputs[{i}] ({name!r}): dtype {dtype!r} is not one of "
                             f"{', '.join(_CONVERTERS)}")
        out.append(Field(name, dtype, bool(entry.get("nullable", False))))
    if not out:
        raise ValueError("signature.inputs is empty: the model takes no features")
    return tuple(out)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def decode(body: bytes) -> Any:
    """The body as JSON; 400 when it is not JSON (NaN and Infinity are not JSON either)."""
    if not body:
        raise RequestError(400, "empty request body; send a JSON object, see GET /openapi.json")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise RequestError(400, f"request body is not UTF-8: {e.reason} at byte {e.start}") from None
    except RecursionError:
        # arrays in arrays a hundred thousand deep: JSON, but no request of any model
        raise RequestError(400, "request body is nested too deeply; send rows of values, see "
                           "GET /openapi.json") from None
    except ValueError as e:
        raise RequestError(400, f"request body is not valid JSON: {e}") from None


def parse(doc: Any, fields: tuple[Field, ...], max_rows: int = 10_000) -> Batch:
    """Check a decoded request body against ``fields``; raise 422 naming each bad row and field."""
    if not isinstance(doc, dict):
        raise RequestError(422, f"the body must be a JSON object, not {_json_type(doc)}; "
                           "send {\"instances\": [{...}]}")
    forms = [k for k in ("instances", "inputs", "columns", "dataframe_split", "dataframe_records")
             if k in doc]
    if len(forms) != 1:
        found = f"found {', '.join(forms)}" if forms else f"found {', '.join(map(str, doc)) or 'none'}"
        raise RequestError(422, "the body must have exactly one of 'instances', 'inputs', "
                           f"'columns'+'data' ({found}); see GET /openapi.json")
    form = forms[0]
    extra = set(doc) - {form, "data" if form == "columns" else form}
    if extra:
        raise RequestError(422, f"unexpected top-level key(s) {', '.join(sorted(map(repr, extra)))} "
                           f"beside {form!r}")
    value = doc[form]
    if form in ("instances", "dataframe_records"):
        if not isinstance(value, list):
            raise RequestError(422, f"'{form}' must be a list of objects, not {_json_type(value)}")
        rows = _from_records(value, fields, max_rows)
    elif form == "inputs":
        if not isinstance(value, dict):
            raise RequestError(422, f"'inputs' must be an object, not {_json_type(value)}")
        rows = _from_inputs(value, fields, max_rows)
    elif form == "columns":
        rows = _from_split(value, doc.get("data"), fields, max_rows, where="")
    else:
        if not isinstance(value, dict):
            raise RequestError(422, f"'dataframe_split' must be an object, not {_json_type(value)}")
        extra = set(value) - {"columns", "data", "index"}
        if extra:
            raise RequestError(422, f"unexpected key(s) {', '.join(sorted(map(repr, extra)))} in "
                               "'dataframe_split'")
        rows = _from_split(value.get("columns"), value.get("data"), fields, max_rows,
                           where="dataframe_split.")
    return Batch(rows)


# --------------------------------------------------------------------------------------- forms


def _from_records(records: list, fields: tuple[Field, ...], max_rows: int) -> list[list[Any]]:
    _check_count(len(records), max_rows)
    names = [f.name for f in fields]
    fast = _records_as_given(records, names, fields)
    if fast is not None:
        return fast
    converters = [_converter(f) for f in fields]
    errors: list[dict] = []
    rows = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            errors.append(_error(i, None, f"must be an object, not {_json_type(record)}"))
        else:
            rows.append(_row(i, record, names, converters, errors))
        if len(errors) >= MAX_ERRORS:
            break
    _raise_if(errors)
    return rows


def _row(i: int, record: dict, names: list[str], converters: list[Callable], errors: list[dict],
         ) -> list[Any]:
    row = []
    present = 0
    for name, convert in zip(names, converters):
        if name in record:
            present += 1
            try:
                row.append(convert(record[name]))
            except _Bad as e:
                errors.append(_error(i, name, str(e)))
        else:
            errors.append(_error(i, name, "is missing"))
    if len(record) > present:
        errors.extend(_error(i, key, f"is not a feature of this model{_known(names)}")
                      for key in record if key not in names)
    return row


def _from_inputs(inputs: dict, fields: tuple[Field, ...], max_rows: int) -> list[list[Any]]:
    lists = [k for k, v in inputs.items() if isinstance(v, list)]
    if not lists:
        return _from_records([inputs], fields, max_rows)
    if len(lists) != len(inputs):
        scalars = sorted(k for k in inputs if k not in lists)
        raise RequestError(422, "'inputs' mixes lists (columnar form) and single values: "
                           f"{', '.join(map(repr, scalars[:5]))} are not lists")
    names = [f.name for f in fields]
    errors = [_error(None, k, f"is not a feature of this model{_known(names)}")
              for k in inputs if k not in names]
    errors += [_error(None, n, "is missing") for n in names if n not in inputs]
    _raise_if(errors[:MAX_ERRORS])
    columns = [inputs[n] for n in names]
    return _from_columns(columns, names, fields, max_rows)


def _from_split(columns: Any, data: Any, fields: tuple[Field, ...], max_rows: int, where: str,
                ) -> list[list[Any]]:
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError(422, f"'{where}columns' must be a list of feature names")
    if not isinstance(data, list):
        raise RequestError(422, f"'{where}data' must be a list of rows (lists), not "
                           f"{_json_type(data)}")
    names = [f.name for f in fields]
    errors = [_error(None, c, f"is not a feature of this model{_known(names)}")
              for c in columns if c not in names]
    errors += [_error(None, n, "is missing from columns") for n in names if n not in columns]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    errors += [_error(None, c, "appears twice in columns") for c in dupes]
    _raise_if(errors[:MAX_ERRORS])
    _check_count(len(data), max_rows)
    position = [columns.index(n) for n in names]
    width = len(columns)
    fast = _split_as_given(data, position, width, fields)
    if fast is not None:
        return fast
    converters = [_converter(f) for f in fields]
    rows = []
    for i, values in enumerate(data):
        if not isinstance(values, list) or len(values) != width:
            what = f"{len(values)} values" if isinstance(values, list) else _json_type(values)
            errors.append(_error(i, None, f"must be a list of {width} values (one per column), "
                                 f"not {what}"))
        else:
            row = []
            for name, p, convert in zip(names, position, converters):
                try:
                    row.append(convert(values[p]))
                except _Bad as e:
                    errors.append(_error(i, name, str(e)))
            rows.append(row)
        if len(errors) >= MAX_ERRORS:
            break
    _raise_if(errors)
    return rows


def _from_columns(columns: list[list], names: list[str], fields: tuple[Field, ...],
                  max_rows: int) -> list[list[Any]]:
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        sizes = ", ".join(f"{n}={len(c)}" for n, c in zip(names, columns))
        raise RequestError(422, f"'inputs' columns differ in length ({sizes})")
    n = lengths.pop()
    _check_count(n, max_rows)
    if _as_given(columns, fields):
        return list(map(list, zip(*columns)))
    errors: list[dict] = []
    converted = []
    for f, values in zip(fields, columns):
        convert = _converter(f)
        out = []
        for i, v in enumerate(values):
            try:
                out.append(convert(v))
            except _Bad as e:
                errors.append(_error(i, f.name, str(e)))
                if len(errors) >= MAX_ERRORS:
                    _raise_if(errors)
        converted.append(out)
    _raise_if(errors)
    return [list(r) for r in zip(*converted)]


# ------------------------------------------------------------------------ the common case, fast
#
# Most requests are right, and most values need no conversion (a float is a number, a string a
# string). These check that whole columns are so with a few C-level passes (``set(map(type,
# column))``) instead of a Python call per value, and return the rows exactly as the
# value-by-value path would. Anything else (a wrong type, a missing key, an integral float
# for an int, an overflow) returns None, and the value-by-value path runs from the start,
# so every 422 message is the one it always was.

_NONE = type(None)
_ALLOWED = {"float": frozenset({int, float}), "int": frozenset({int}),
            "bool": frozenset({bool}), "str": frozenset({str})}


def _as_given(columns: list, fields: tuple[Field, ...]) -> bool:
    """Whether each column's values are all of its field's types, as the converters keep them."""
    return all(_all_of(f, column) for f, column in zip(fields, columns))


def _rows_as_given(rows: list, fields: tuple[Field, ...]) -> bool:
    """:func:`_as_given` for rows in signature order; one pass over all values when every
    field takes the same (all numbers, say: the common case), else column by column."""
    first = fields[0]
    if all(f.dtype == first.dtype and f.nullable == first.nullable for f in fields):
        return _all_of(first, list(chain.from_iterable(rows)))
    return _as_given(list(zip(*rows)), fields)


def _all_of(f: Field, values: Any) -> bool:
    types = set(map(type, values))
    nulls = f.nullable and _NONE in types
    if not types - {_NONE} <= _ALLOWED[f.dtype] or (_NONE in types and not nulls):
        return False
    if f.dtype in _NUMBERS and types & _NUMBERS_TYPES:
        numbers = [v for v in values if v is not None] if nulls else values
        try:
            # 1e999 parses to infinity (and max() would pass over a NaN); abs of an int is exact
            return (all(map(isfinite, numbers))
                    and max(map(abs, numbers), default=0) <= MAX_NUMBER)
        except OverflowError:  # an int too big for a double: the slow path's to judge
            return False
    return True


def _records_as_given(records: list, names: list[str], fields: tuple[Field, ...],
                      ) -> list[list[Any]] | None:
    if set(map(type, records)) != {dict} or set(map(len, records)) != {len(names)}:
        return None
    get = itemgetter(*names)
    try:
        rows = list(map(get, records)) if len(names) > 1 else [(get(r),) for r in records]
    except KeyError:
        return None  # (every name present and the same count: no extra key either)
    if not _rows_as_given(rows, fields):
        return None
    return list(map(list, rows))


def _split_as_given(data: list, position: list[int], width: int, fields: tuple[Field, ...],
                    ) -> list[list[Any]] | None:
    if not data or set(map(type, data)) != {list} or set(map(len, data)) != {width}:
        return None
    if position != list(range(width)):
        get = itemgetter(*position)
        data = list(map(list, map(get, data))) if width > 1 else data
    return data if _rows_as_given(data, fields) else None


# ---------------------------------------------------------------------------------- value types


class _Bad(Exception):
    pass


#: the largest magnitude a feature may have: a 32-bit float's, which tree models compute in
#: (a larger value reaches them as infinity); the OpenAPI document states the same bound
MAX_NUMBER = 3.4028234663852886e38
_NUMBERS = frozenset({"float", "int"})
_NUMBERS_TYPES = frozenset({int, float})
_RANGE = "must be within ±3.4e38 (a 32-bit float's range)"


def _float(v: Any) -> Any:
    t = type(v)
    if t is float and not isfinite(v):  # JSON has no infinity, but 1e999 parses to one
        raise _Bad("must be a finite number (it overflows a double)")
    if t is int or t is float:
        if abs(v) <= MAX_NUMBER:
            return v
        raise _Bad(_RANGE)
    raise _Bad(f"must be a number, not {_describe(v)}")


def _int(v: Any) -> Any:
    t = type(v)
    if t is float and isfinite(v) and v.is_integer():
        v, t = int(v), int
    if t is int:
        if abs(v) <= MAX_NUMBER:
            return v
        raise _Bad(_RANGE)
    if t is float:
        raise _Bad(f"must be an integer, not {v!r}")
    raise _Bad(f"must be an integer, not {_describe(v)}")


def _bool(v: Any) -> Any:
    if type(v) is bool:
        return v
    raise _Bad(f"must be true or false, not {_describe(v)}")


def _str(v: Any) -> Any:
    if type(v) is str:
        return v
    raise _Bad(f"must be a string, not {_describe(v)}")


_CONVERTERS: dict[str, Callable[[Any], Any]] = {"float": _float, "int": _int, "bool": _bool,
                                                "str": _str}


def _converter(f: Field) -> Callable[[Any], Any]:
    convert = _CONVERTERS[f.dtype]
    if f.nullable:
        def nullable(v: Any) -> Any:
            return None if v is None else convert(v)
        return nullable

    def required(v: Any) -> Any:
        if v is None:
            raise _Bad("must not be null (the model was trained without missing values here)")
        return convert(v)
    return required


# ------------------------------------------------------------------------------------- helpers


def _check_count(n: int, max_rows: int) -> None:
    if n == 0:
        raise RequestError(422, "no rows to predict; send at least one")
    if n > max_rows:
        raise RequestError(413, f"{n} rows in one request; the limit is {max_rows}, split the batch")


def _error(row: int | None, field: str | None, problem: str) -> dict:
    if row is not None and field is not None:
        message = f"row {row}: field {field!r} {problem}"
    elif row is not None:
        message = f"row {row} {problem}"
    elif field is not None:
        message = f"field {field!r} {problem}"
    else:
        message = problem
    return {"row": row, "field": field, "message": message}


def _raise_if(errors: list[dict]) -> None:
    if errors:
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise RequestError(422, errors[0]["message"] + more, errors)


def _known(names: list[str]) -> str:
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return f" (it takes: {shown})"


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


def _describe(v: Any) -> str:
    text = json.dumps(v)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{_json_type(v)} {text}" if v is not None else "null"
