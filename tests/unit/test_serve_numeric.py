"""The fast parser of bodies of numbers: the rows of the slow path, or None, never anything else."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from cd4ml.serve import schema
from cd4ml.serve.numeric import Numbers
from cd4ml.serve.schema import Field

FIELDS = (Field("a", "float", False), Field("n", "int", False), Field("b", "float", True))
VALUES = [0, 1, -7, 3.0, 2.5, -0.0, 1e-300, 1e300, 2**53 + 1, 2**63, 2**64 + 1, 10**30, 4e38,
          True, False, None, "1.5", "", [1.0], {"a": 1}]


def slow(body: bytes, fields=FIELDS, max_rows: int = 10_000) -> list | int:
    """The rows the schema's own path makes of ``body``, or the status it refuses it with."""
    try:
        return schema.parse(schema.decode(body), fields, max_rows).rows
    except schema.RequestError as e:
        return e.status


def check(numbers: Numbers, body: bytes, fields=FIELDS) -> bool:
    """Whether the fast path took ``body``; if it did, its rows and matrix must be the slow
    path's, value for value and type for type."""
    fast = numbers.parse(body)
    if fast is None:
        return False
    want = slow(body, fields)
    assert isinstance(want, list), (body, want)
    assert json.dumps(fast.rows) == json.dumps(want), body  # (json.dumps tells 3 from 3.0)
    assert fast.matrix.dtype == np.float64
    assert np.array_equal(fast.matrix, np.array(want, dtype=np.float64)), body
    return True


def test_every_body_is_taken_as_the_slow_path_takes_it_or_left_to_it():
    numbers = Numbers.of(FIELDS, 10_000)
    rng = random.Random(12)
    taken = 0
    for _ in range(3000):
        n = rng.choice([1, 2, 5])
        # mostly plain numbers; now and then a value of another kind, a reordering, a form
        pool = VALUES[:6] if rng.random() < 0.5 else VALUES
        rows = [[rng.choice(pool) for _ in FIELDS] for _ in range(n)]
        names = [f.name for f in FIELDS]
        if rng.random() < 0.3:
            order = rng.sample(range(3), 3)
            names, rows = [names[i] for i in order], [[r[i] for i in order] for r in rows]
        form = rng.choice(["split", "columns", "records", "index"])
        if form == "records":
            doc = {"instances": [dict(zip(names, r)) for r in rows]}
        elif form == "columns":
            doc = {"columns": names, "data": rows}
        else:
            doc = {"dataframe_split": {"columns": names, "data": rows}}
            if form == "index":
                doc["dataframe_split"]["index"] = list(range(n))
        taken += check(numbers, json.dumps(doc).encode())
    assert taken > 300  # the common case does take the fast path


@pytest.mark.parametrize("body", [
    b'{"columns":["a","n","b"],"data":[[1.5,true,2.0]]}',  # numpy would read true as 1
    b'{"columns":["a","n","b"],"data":[[1.5,3.0,2.0]]}',  # 3.0 for an int: the slow path's 3
    b'{"columns":["a","n","b"],"data":[[100000000000000000000000,3,2.0]]}',  # orjson: a float
    b'{"columns":["a","n","b"],"data":[[1e999,3,2.0]]}',
    b'{"columns":["a","n","b"],"data":[[1.5,3,null]]}',
    b'{"columns":["a","n","b"],"data":[[1.5,3]]}',
    b'{"columns":["a","n","b"],"data":[[1.5,3,2.0],[1.5,3]]}',
    b'{"columns":["a","n","b"],"data":[[[1.5],[3],[2.0]]]}',
    b'{"columns":["a","n","a"],"data":[[1.5,3,2.0]]}',
    b'{"columns":[{},"n","a"],"data":[[1.5,3,2.0]]}',  # (schemathesis found this one)
    b'{"columns":[1,"n","a"],"data":[[1.5,3,2.0]]}',
    b'{"columns":["a","n","b"],"data":[]}',
    b'{"columns":["a","n","b"],"data":[[1,2,3]],"index":[0]}',
    b'{"instances":[{"a":1.5,"n":3,"c":2.0}]}',
    b'{"inputs":{"a":1.5,"n":3,"b":2.0}}',
    b'{"instances":[{"a":1.5,"n":3,"b":2.0}],"columns":[]}',
    b'[1, 2, 3]',
    b'{"instances": NaN}',
])
def test_what_it_cannot_vouch_for_is_left_to_the_slow_path(body):
    assert Numbers.of(FIELDS, 10_000).parse(body) is None


def test_only_number_signatures_and_at_most_max_rows():
    assert Numbers.of((Field("a", "float", False), Field("s", "str", False)), 10) is None
    assert Numbers.of((Field("a", "bool", False),), 10) is None
    numbers = Numbers.of(FIELDS, 2)
    three = json.dumps({"columns": ["a", "n", "b"], "data": [[1, 2, 3]] * 3}).encode()
    assert numbers.parse(three) is None and slow(three, max_rows=2) == 413
    one = Numbers.of((Field("x", "float", False),), 10)
    assert check(one, b'{"instances":[{"x":1.5},{"x":2}]}', (Field("x", "float", False),))
    assert check(one, b'{"dataframe_split":{"columns":["x"],"data":[[1.5],[2]]}}',
                 (Field("x", "float", False),))
