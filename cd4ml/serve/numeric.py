"""The common ``POST /predict`` body, rows of numbers, parsed and checked in a few C calls.

A 1,000-row batch of 30 numbers is 30,000 values: the standard library's ``json.loads`` spent
23 ms on it and the value-by-value checks 5 ms more, several times what ONNX Runtime takes to
predict it. Here orjson parses the body, numpy makes the feature matrix from the parsed rows
in one call, and the checks are done on the matrix. Anything this path cannot vouch for
returns None and :mod:`cd4ml.serve.schema` parses the body again from the start, so every
refusal, and every accepted body outside this path, is answered exactly as before.

It takes the split form (``{"dataframe_split": {"columns", "data"}}``, ``{"columns", "data"}``)
and records (``{"instances": [...]}``, ``{"dataframe_records": [...]}``) for signatures whose
features are all ``float`` or ``int``, and accepts a body only when it is certain that the slow
path would give the same rows:

- numpy's inferred type of the whole matrix is int64 or float64 (a string, a null, a nested
  list, an object or a ragged row makes it something else, or raises);
- no ``true``/``false`` anywhere in the body (numpy reads a boolean as 1 or 0);
- every value of an ``int`` feature a JSON integer (``3.0`` is converted by the slow path);
- every magnitude under 2**63: orjson reads an integer beyond 64 bits as a float, where the
  slow path keeps it exact (and ``MAX_NUMBER`` is far above, so no range error is missed).
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from cd4ml.serve.schema import Batch, Field

#: magnitudes from here on may be integers orjson turned into floats: the slow path judges them
_EXACT = float(2**63)
_SPLIT = frozenset({"columns", "data"})
_SPLIT_INDEXED = frozenset({"columns", "data", "index"})


class Numbers:
    """The fast parser for one signature, or :meth:`of` None when it has a non-number field."""

    def __init__(self, fields: tuple[Field, ...], max_rows: int):
        self.names = [f.name for f in fields]
        self.width = len(fields)
        self.max_rows = max_rows
        #: positions (signature order) of the features that take integers only
        self.ints = [j for j, f in enumerate(fields) if f.dtype == "int"]
        self._get = itemgetter(*self.names)

    @classmethod
    def of(cls, fields: tuple[Field, ...], max_rows: int) -> Numbers | None:
        if not fields or any(f.dtype not in ("float", "int") for f in fields):
            return None
        return cls(fields, max_rows)

    def parse(self, body: bytes) -> Batch | None:
        """Checked rows and their float64 matrix (signature order), or None: ask the slow path."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(doc) is not dict or b"true" in body or b"false" in body:
            return None
        if len(doc) == 1:
            ((form, value),) = doc.items()
            if form == "dataframe_split" and type(value) is dict and (
                    value.keys() == _SPLIT or value.keys() == _SPLIT_INDEXED):
                return self._split(value["columns"], value["data"])
            if form in ("instances", "dataframe_records"):
                return self._records(value)
            return None
        if doc.keys() == _SPLIT:
            return self._split(doc["columns"], doc["data"])
        return None

    def _split(self, columns: Any, data: Any) -> Batch | None:
        if type(data) is not list or not 0 < len(data) <= self.max_rows:
            return None
        if columns == self.names:
            position = None
        elif (type(columns) is list and len(columns) == self.width
              and set(map(type, columns)) == {str} and sorted(columns) == sorted(self.names)):
            # (every name once: the same sorted list of as many strings)
            position = [columns.index(n) for n in self.names]
        else:
            return None
        X = self._matrix(data)
        if X is None:
            return None
        if position is not None:
            X = X[:, position]
            data = list(map(list, map(itemgetter(*position), data))) if self.width > 1 else data
        return self._checked(data, X)

    def _records(self, records: Any) -> Batch | None:
        if type(records) is not list or not 0 < len(records) <= self.max_rows:
            return None
        if set(map(type, records)) != {dict} or set(map(len, records)) != {self.width}:
            return None
        try:
            # every name present and as many keys: no key of another name either
            rows = list(map(self._get, records))
        except KeyError:
            return None
        rows = list(map(list, rows)) if self.width > 1 else [[v] for v in rows]
        X = self._matrix(rows)
        return None if X is None else self._checked(rows, X)

    def _matrix(self, rows: list) -> Any:
        try:
            X = np.array(rows)
        except (ValueError, TypeError, OverflowError):
            return None  # ragged rows, and whatever numpy cannot make one array of
        if X.dtype.kind not in "if" or X.ndim != 2 or X.shape[1] != self.width:
            return None
        return X

    def _checked(self, rows: list, X: Any) -> Batch | None:
        if X.dtype.kind == "f":
            # (orjson never gives infinity or NaN; a NaN here would fail the comparison too)
            if not float(np.abs(X).max()) < _EXACT:
                return None
            for j in self.ints:
                if set(map(type, map(itemgetter(j), rows))) != {int}:
                    return None
            X = X.astype(np.float64, copy=False)
        else:
            X = X.astype(np.float64)
        return Batch(rows, X)
