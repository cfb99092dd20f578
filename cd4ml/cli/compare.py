"""``cd4ml compare A B``: two runs or model versions side by side, with deltas."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any

from cd4ml.cli.common import add_json, add_read_pipeline, add_store, open_store, read_pipeline
from cd4ml.cli.format import short
from cd4ml.errors import Cd4mlError


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_store(p)
    add_json(p)
    p.add_argument("a", metavar="A", help="a model version (e.g. wine:3, wine@production) or a run id")
    p.add_argument("b", metavar="B", help="a model version or a run id")
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV ('-': stdout)")
    add_read_pipeline(p, "the pipeline of a bare version like 3 (default: the only one)")


def run(args: argparse.Namespace) -> int:
    from cd4ml.reporting.api import compare_json, label
    from cd4ml.reporting.console import print_json, table
    from cd4ml.reporting.lineage import compare

    with open_store(args) as store:
        c = compare(store, args.a, args.b, read_pipeline(store, args, only=True))
    la, lb = label(c.a), label(c.b)
    header = ["kind", "name", "slice", "slice_value", la, lb, "delta"]
    rows = [("metric", m.name, m.slice, m.slice_value, m.a, m.b, m.delta) for m in c.metrics]
    rows += [("param", p.name, "", "", p.a, p.b, None) for p in c.params]
    if args.csv:
        _write_csv(args.csv, header, rows)
        if args.csv == "-":
            return 0
    if args.json:
        print_json(compare_json(c))
        return 0
    out = [f"A: {la} (run {c.a.source.id})   B: {lb} (run {c.b.source.id})   delta = B - A"]
    out += [f"  {what:<16} {_fact(what, a)} -> {_fact(what, b)}" for what, a, b in c.facts]
    if c.metrics:
        out += ["", table(["metric", "rows", la, lb, "delta"],
                          [(m.name, f"{m.slice}={m.slice_value}" if m.slice else "all", m.a, m.b,
                            "-" if m.delta is None else f"{m.delta:+.4g}") for m in c.metrics])]
    else:
        out.append("no metrics recorded for either")
    changed = c.changed_params
    if changed:
        out += ["", table(["param", la, lb], [(p.name, p.a, p.b) for p in changed])]
    else:
        out.append("params: the same")
    print("\n".join(out))
    return 0


def _fact(what: str, value: str | None) -> str:
    # hashes are told apart by their first 12 characters; a branch name is shown whole
    return (value if what == "branch" else short(value, 12)) or "-"



def _write_csv(target: str, header: list[str], rows: list[tuple]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])
    if target == "-":
        sys.stdout.write(buf.getvalue())
        return
    try:
        Path(target).write_text(buf.getvalue(), encoding="utf-8")
    except OSError as e:
        raise Cd4mlError(f"cannot write {target}: {e.strerror}; choose another --csv path") from None


def _cell(v: Any) -> Any:
    import json

    return json.dumps(v, default=str) if isinstance(v, (dict, list)) else v

