"""The monitor's fold of logged rows into a float matrix (``profile._matrix``) gives the values
the obvious computation gives: numpy's conversion of the picked rows when it takes them all,
and per value otherwise (a missing or non-numeric value is NaN)."""

from __future__ import annotations

import math
import random
from operator import itemgetter

import numpy as np

from cd4ml.watch.profile import _matrix


def obvious(rows: list, names: list[str]) -> np.ndarray:
    try:
        picked = [itemgetter(*names)(r) for r in rows]
        return np.array(picked, dtype="float64").reshape(len(rows), len(names))
    except (TypeError, ValueError, KeyError, AttributeError):
        def number(v):
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
        return np.array([[number(r.get(n)) if type(r) is dict else math.nan for n in names]
                         for r in rows], dtype="float64").reshape(len(rows), len(names))


def test_the_matrix_equals_the_obvious_computation():
    rng = random.Random(3)
    odd = [None, True, 3, "1.5", "abc", [1.0], float("inf"), -0.0]
    for trial in range(200):
        names = rng.sample(["a", "b", "c", "d"], rng.randint(1, 4))
        rows = []
        for _ in range(rng.randint(0, 30)):
            row = {n: rng.uniform(-5, 5) for n in names}
            if trial % 3 == 0 and rng.random() < 0.2:  # a third of the chunks hold odd values
                row[rng.choice(names)] = rng.choice(odd)
            if trial % 5 == 0 and rng.random() < 0.1:
                del row[rng.choice(names)]
            rows.append(row if trial % 7 or rng.random() < 0.9 else "not a row")
        got, want = _matrix(rows, names), obvious(rows, names)
        assert got.shape == want.shape == (len(rows), len(names))
        assert np.array_equal(got, want, equal_nan=True), (names, rows)
