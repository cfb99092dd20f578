"""``cd4ml validate``: the data against its expectation suite and for drift; exit 1 if it fails."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cd4ml.cli.common import add_common, add_override, pipeline_and_override, store_with_progress

#: a table cell longer than this is cut (a column list can be long); --json has it all
WIDTH = 48


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    add_override(p, "accept drift (never a failed expectation)")


def run(args: argparse.Namespace) -> int:
    from cd4ml.reporting.console import print_json
    from cd4ml.stages.validate import validate

    spec, by, reason = pipeline_and_override(args)
    with store_with_progress(args) as store:
        result = validate(spec, store, override_by=by, reason=reason)
    if args.json:
        print_json({"success": result.success, "suite": result.suite, "rows": result.rows,
                    "data_hash": result.data_hash, "baseline_version": result.baseline_version,
                    "expectations": result.expectations, "drift": result.drift}, sys.stdout)
    else:
        print(render(result))
    return 0 if result.success else 1


def render(result: Any) -> str:
    """Every expectation and every feature's drift as tables, then the verdict."""
    from cd4ml.reporting.console import fmt, paint, table

    def status(ok: bool) -> str:
        return paint("pass", "green") if ok else paint("FAIL", "red")

    out = []
    if result.expectations:
        rows = [(status(e.success), e.expectation, e.column or "-", _cut(fmt(e.observed)),
                 _cut(", ".join(fmt(x) for x in e.unexpected_examples)) or "-")
                for e in result.expectations]
        out += [f"suite {result.suite}: {result.rows} rows",
                table(["status", "expectation", "column", "observed", "unexpected examples"], rows)]
    else:
        out.append("no expectation suite in the spec")
    out.append("")
    if result.drift:
        rows = [(status(not d.drifted), d.feature, d.method, d.statistic, d.threshold)
                for d in result.drift]
        out += [f"drift against model version {result.baseline_version}:",
                table(["status", "feature", "method", "statistic", "threshold"], rows)]
    elif result.baseline_version is None:
        out.append("drift: not checked (no production model yet, or drift.enabled is false)")
    else:
        out.append(f"drift: model version {result.baseline_version} has no statistics for these "
                   "features")
    if result.drift_override:
        o = result.drift_override
        out.append(paint(f"drift in {', '.join(o['features'])} ACCEPTED by {o['by']}: "
                         f"{o['reason']}", "yellow"))
    passed = sum(e.success for e in result.expectations)
    drifted = sum(d.drifted for d in result.drift)
    verdict = (f"validation {'passed' if result.success else 'FAILED'}: "
               f"{passed}/{len(result.expectations)} expectations passed, "
               f"{drifted}/{len(result.drift)} features drifted")
    out += ["", paint(verdict, "green" if result.success else "red")]
    return "\n".join(out)


def _cut(text: str) -> str:
    return text if len(text) <= WIDTH else text[: WIDTH - 1] + "…"
