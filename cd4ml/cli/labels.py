"""``cd4ml labels add FILE``: ground truth joined to logged predictions by request id."""

from __future__ import annotations

import argparse
from pathlib import Path

from cd4ml.cli.common import add_common, load_pipeline, open_store


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("action", choices=["add"], help="add: record the labels of FILE")
    p.add_argument("file", metavar="FILE", type=Path,
                   help="CSV with a header or JSON lines: request_id, label, optional row, time "
                        "and slice columns")
    add_common(p)
    p.add_argument("--log", action="append", default=[], metavar="FILE",
                   help="prediction log to find the requests in, besides the environments' host "
                        "logs (e.g. saved kubectl logs); repeatable")
    p.add_argument("--skip-invalid", action="store_true",
                   help="record the valid rows of a file that has invalid ones (default: none)")


def run(args: argparse.Namespace) -> int:
    from cd4ml.reporting.console import paint, print_json
    from cd4ml.watch.labels import LabelsConfig, add_labels

    spec = load_pipeline(args)
    config = LabelsConfig(file=args.file, logs=tuple(args.log), skip_invalid=args.skip_invalid)
    with open_store(args) as store:
        result = add_labels(spec, store, config)
    if args.json:
        print_json({**{k: getattr(result, k) for k in ("file", "sha256", "rows", "added",
                                                       "already", "recorded", "refused")},
                    "problems": [{"kind": p.kind, "count": p.count, "examples": list(p.examples)}
                                 for p in result.problems]})
    else:
        for problem in result.problems:
            print(paint(problem.line, "red"))
        if result.recorded:
            print(f"{result.file}: {result.rows} labels, {result.added} added, {result.already} "
                  f"already recorded" + (f", {result.refused} refused" if result.refused else ""))
        else:
            print(paint(f"{result.file}: failed validation ({result.refused} of {result.rows} "
                        "rows); nothing recorded. Fix the rows above, or pass --skip-invalid to "
                        "record the valid ones", "red"))
    return 1 if result.problems else 0
