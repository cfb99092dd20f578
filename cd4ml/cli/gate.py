"""``cd4ml gate``: decide whether a run's model may be promoted; exit 1 if it may not."""

from __future__ import annotations

import argparse
import os
from typing import Any

from cd4ml.cli.common import add_common, add_override, pipeline_and_override, store_with_progress
from cd4ml.states import RuleKind


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--run", metavar="RUN_ID",
                   help="the run to gate (default: the pipeline's latest run with a model)")
    add_override(p)


def run(args: argparse.Namespace) -> int:
    from cd4ml.reporting.console import print_json, to_jsonable
    from cd4ml.stages.gate_recorded import gate_recorded

    spec, by, reason = pipeline_and_override(args)
    with store_with_progress(args) as store:
        done = gate_recorded(spec, store, args.run, override_by=by, reason=reason)
    if args.json:
        print_json({"run_id": done.run.id, "model_version": done.model.version,
                    **to_jsonable(done.result)})
    else:
        print(render(done.result, done.model.ref, spec.path))
    return 0 if done.result.blessed else 1


def render(result: Any, ref: str, spec_path: Any) -> str:
    """The rules as a table, why each failing one failed (with its spec line), the verdict."""
    from cd4ml.reporting.console import paint, table

    rows = [(o.rule, o.observed, None if o.kind is RuleKind.NO_GATES else o.threshold, o.baseline,
             "pass" if o.passed else "FAIL") for o in result.outcomes]
    out = [table(["rule", "observed", "threshold", "baseline", "result"], rows)]
    baseline = (f"baseline: production {ref.split(':')[0]}:{result.baseline_version}"
                if result.baseline_version is not None else "baseline: no production model")
    out.append(baseline)
    notes = [o for o in result.outcomes if not o.passed]
    if notes:
        out.append("")
        out += [f"  {_where(spec_path, o.line)}{o.rule}: {o.reason}" for o in notes]
    out.append("")
    if result.overridden:
        out.append(paint(f"OVERRIDDEN by {result.override_by}: {result.override_reason}", "yellow"))
        out.append(f"gate failed, overridden: {ref} blessed")
    elif result.passed:
        out.append(paint(f"gate passed: {ref} blessed", "green"))
    else:
        out.append(paint(f"gate FAILED: {len(notes)} of {len(result.outcomes)} rule checks "
                         f"failed; {ref} not blessed", "red"))
    return "\n".join(out)


def _where(spec_path: Any, line: int) -> str:
    if not line:
        return ""
    try:
        shown = os.path.relpath(spec_path)
    except ValueError:
        shown = str(spec_path)
    return f"{shown}:{line}: "
