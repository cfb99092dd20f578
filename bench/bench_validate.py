"""What running an expectation suite costs in cd4ml, next to great-expectations alone and plain pandas.

On a 1,000,000-row frame (numeric and categorical columns, a few bad values) with a suite of
8 expectations, times the median of REPEAT runs (the paths taking turns), each from a fresh
ephemeral context:

  (a) cd4ml: ``cd4ml.stages.validate.run_suite`` (context, data source, GE's validator, the outcomes);
  (b) great-expectations' own ``ValidationDefinition.run`` of the same suite on the same frame
      (suite and definition added to the context, result stored, GE's default SUMMARY format),
      and the same with the BASIC format cd4ml uses;
  (c) the same checks written in plain pandas: the floor.

Progress bars are off in (a) and (b) alike. Target: (a)/(b) <= 1.1.
Run: python bench/bench_validate.py [ROWS]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
REPEAT = 7


def make_frame(rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "amount": rng.gamma(2.0, 50.0, rows),
        "age": rng.integers(18, 90, rows).astype("int64"),
        "score": rng.normal(0.0, 1.0, rows),
        "country": rng.choice(["de", "fr", "nl", "it", "es"], rows),
        "channel": rng.choice(["web", "app", "store"], rows, p=[0.5, 0.3, 0.2]),
    })
    frame.loc[[10, 5000, 77777], "amount"] = -1.0  # a few bad rows, so examples are collected
    frame.loc[[3, 99], "country"] = "xx"
    frame.loc[::50_000, "score"] = np.nan
    return frame


def make_suite() -> Any:
    import great_expectations as gx

    E = gx.expectations
    return gx.ExpectationSuite(name="bench", expectations=[
        E.ExpectTableColumnsToMatchSet(column_set=["amount", "age", "score", "country", "channel"]),
        E.ExpectTableRowCountToBeBetween(min_value=1, max_value=10 * ROWS),
        E.ExpectColumnValuesToNotBeNull(column="amount"),
        E.ExpectColumnValuesToBeBetween(column="amount", min_value=0),
        E.ExpectColumnValuesToBeBetween(column="age", min_value=18, max_value=120),
        E.ExpectColumnMeanToBeBetween(column="score", min_value=-0.5, max_value=0.5),
        E.ExpectColumnValuesToBeInSet(column="country", value_set=["de", "fr", "nl", "it", "es"]),
        E.ExpectColumnValuesToBeInSet(column="channel", value_set=["web", "app", "store"]),
    ])


def fresh_suite(raw: dict) -> Any:
    import great_expectations as gx

    return gx.ExpectationSuite(**raw)


def cd4ml_path(raw: dict, frame: Any) -> Any:
    from cd4ml.stages.validate import run_suite

    return run_suite(fresh_suite(raw), frame)


def ge_path(raw: dict, frame: Any, result_format: Any = None) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    bd = (context.data_sources.add_pandas("bench").add_dataframe_asset("data")
          .add_batch_definition_whole_dataframe("all"))
    suite = context.suites.add(fresh_suite(raw))
    vd = context.validation_definitions.add(gx.ValidationDefinition(name="bench", data=bd, suite=suite))
    kwargs = {} if result_format is None else {"result_format": result_format}
    return vd.run(batch_parameters={"dataframe": frame}, **kwargs)


def pandas_path(frame: Any) -> dict[str, Any]:
    """The same eight checks, with up to five unexpected examples each: the floor."""
    out = {}
    out["columns"] = set(frame.columns) == {"amount", "age", "score", "country", "channel"}
    out["rows"] = 1 <= len(frame) <= 10 * ROWS
    amount = frame["amount"]
    nulls = amount.isna()
    out["amount_not_null"] = (int(nulls.sum()), amount[nulls].head(5).tolist())
    bad = amount < 0
    out["amount_min"] = (int(bad.sum()), amount[bad].head(5).tolist())
    age = frame["age"]
    bad = (age < 18) | (age > 120)
    out["age_range"] = (int(bad.sum()), age[bad].head(5).tolist())
    out["score_mean"] = -0.5 <= frame["score"].mean() <= 0.5
    for col, allowed in (("country", ["de", "fr", "nl", "it", "es"]), ("channel", ["web", "app", "store"])):
        values = frame[col]
        bad = ~values.isin(allowed) & values.notna()
        out[f"{col}_set"] = (int(bad.sum()), values[bad].head(5).tolist())
    return out


def interleaved(paths: dict[str, Callable[[], Any]]) -> tuple[dict[str, float], dict[str, Any]]:
    """Median time of each path, the paths taking turns, so that a busy machine slows them alike."""
    outs = {name: fn() for name, fn in paths.items()}  # warm-up: GE registers lazily on first use
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(REPEAT):
        for name, fn in paths.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}, outs


def main() -> None:
    t = time.perf_counter()
    import great_expectations  # noqa: F401

    print(f"import great_expectations: {time.perf_counter() - t:.2f} s (paid once per process)")
    frame = make_frame(ROWS)
    raw = make_suite().to_json_dict()
    print(f"{ROWS:,} rows x {frame.shape[1]} columns, {len(raw['expectations'])} expectations, "
          f"median of {REPEAT}\n")

    basic = {"result_format": "BASIC", "partial_unexpected_count": 5}
    times, outs = interleaved({
        "cd4ml": lambda: cd4ml_path(raw, frame),
        "ge": lambda: ge_path(raw, frame),
        "ge_basic": lambda: ge_path(raw, frame, basic),
        "pandas": lambda: pandas_path(frame),
    })
    a, b, b_basic, c = times["cd4ml"], times["ge"], times["ge_basic"], times["pandas"]
    outcomes, ge_result, floor = outs["cd4ml"], outs["ge"], outs["pandas"]

    # the three agree on what failed
    failed_cd4ml = sorted(o.expectation + ":" + str(o.column) for o in outcomes if not o.success)
    failed_ge = sorted(r.expectation_config.type + ":" + str(r.expectation_config.kwargs.get("column"))
                       for r in ge_result.results if not r.success)
    assert failed_cd4ml == failed_ge, (failed_cd4ml, failed_ge)
    assert floor["amount_min"][0] == 3 and floor["country_set"][0] == 2

    print(f"(a) cd4ml run_suite                      {a:7.3f} s")
    print(f"(b) GE ValidationDefinition.run (SUMMARY) {b:7.3f} s")
    print(f"    GE ValidationDefinition.run (BASIC)   {b_basic:7.3f} s")
    print(f"(c) plain pandas (floor)                 {c:7.3f} s")
    print()
    print(f"cd4ml / GE default      {a / b:5.2f}  (target <= 1.1)")
    print(f"cd4ml / GE same format  {a / b_basic:5.2f}")
    print(f"cd4ml - pandas floor    {a - c:+.3f} s  ({a / c:.1f}x the floor)")
    print(f"failed (all agree): {', '.join(failed_cd4ml)}")


if __name__ == "__main__":
    main()
