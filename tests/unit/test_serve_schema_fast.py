"""The column-at-a-time checks of request rows answer exactly as the value-by-value ones:
the same rows (values and their Python types) or the same 422/413 (message, row, field)."""

from __future__ import annotations

import random

import pytest

from cd4ml.serve import schema
from cd4ml.serve.schema import Field, RequestError, parse

FIELDS = (Field("x", "float", False), Field("n", "int", False), Field("flag", "bool", False),
          Field("city", "str", True), Field("z", "float", True))
GOOD = {"x": [1.5, -2, 0.0, 1e300], "n": [0, 7, -3, 2**70], "flag": [True, False],
        "city": ["Oslo", "", None], "z": [None, 2.5, 3]}
BAD = ["1.5", True, None, 2.5, 3.0, [1], {"a": 1}, float("inf"), float("nan"), 10**400, "x"]


def answer(doc):
    try:
        rows = parse(doc, FIELDS, max_rows=50).rows
        return "rows", [[(type(v), v) for v in r] for r in rows]
    except RequestError as e:
        return "error", e.status, e.message, e.errors
    except OverflowError as e:  # both paths must fail alike even where neither is tidy
        return "overflow", str(e)


def slow(doc, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(schema, "_as_given", lambda columns, fields: False)
        m.setattr(schema, "_records_as_given", lambda *a: None)
        m.setattr(schema, "_split_as_given", lambda *a: None)
        return answer(doc)


def random_doc(rng: random.Random) -> dict:
    n = rng.choice([0, 1, 3, 8])
    names = [f.name for f in FIELDS]
    records = [{k: rng.choice(GOOD[k]) for k in names} for _ in range(n)]
    for _ in range(rng.choice([0, 0, 1, 2])):  # spoil a few rows
        if not records:
            break
        r = rng.choice(records)
        what = rng.random()
        if what < 0.6:
            r[rng.choice(names)] = rng.choice(BAD)
        elif what < 0.8:
            r.pop(rng.choice(names), None)
        else:
            r["colour"] = "red"
    form = rng.choice(["instances", "dataframe_records", "inputs", "columns", "dataframe_split"])
    if form in ("instances", "dataframe_records"):
        return {form: records if rng.random() > 0.05 else records + [[1, 2]]}
    if form == "inputs":
        keys = sorted({k for r in records for k in r}) or names
        return {"inputs": {k: [r.get(k) for r in records] for k in keys}}
    columns = rng.sample(names, len(names))
    data = [[r.get(c) for c in columns] for r in records]
    if data and rng.random() < 0.1:
        data[-1] = data[-1][:-1]
    if form == "columns":
        return {"columns": columns, "data": data}
    return {"dataframe_split": {"columns": columns, "data": data}}


def test_random_bodies_get_the_same_answer_from_both_paths(monkeypatch):
    rng = random.Random(19)
    kinds = set()
    for _ in range(3000):
        doc = random_doc(rng)
        fast = answer(doc)
        assert fast == slow(doc, monkeypatch), doc
        kinds.add(fast[0])
    assert kinds >= {"rows", "error"}


@pytest.mark.parametrize("doc", [
    {"instances": [{"x": 1.5, "n": 2, "flag": True, "city": "a", "z": None}] * 3},
    {"inputs": {"x": [1.5], "n": [2], "flag": [True], "city": ["a"], "z": [None]}},
    {"dataframe_split": {"columns": ["z", "city", "flag", "n", "x"],
                         "data": [[None, "a", True, 2, 1.5]] * 3}},
])
def test_well_formed_bodies_take_the_column_path(doc, monkeypatch):
    """Its whole point: no per-value converter call when nothing needs converting."""
    def refuse(f):
        raise AssertionError("value-by-value path taken")
    monkeypatch.setattr(schema, "_converter", refuse)
    assert len(parse(doc, FIELDS).rows) in (1, 3)


def test_an_integral_float_for_an_int_is_still_converted():
    rows = parse({"instances": [{"x": 1, "n": 3.0, "flag": False, "city": None, "z": 1}]},
                 FIELDS).rows
    assert rows == [[1, 3, False, None, 1]] and type(rows[0][1]) is int
