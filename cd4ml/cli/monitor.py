"""``cd4ml monitor``: read an environment's prediction log over a window and judge each model
version served in it; exit 1 on a breach (``--report``: open or update the GitHub issue)."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, load_pipeline, store_with_progress


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", metavar="ENV", required=True, help="the environment to watch")
    p.add_argument("--since", metavar="DURATION",
                   help="look back this long: 30m, 24h, 7d (default 24h)")
    p.add_argument("--from", dest="start", metavar="TIME", help="window start (ISO 8601)")
    p.add_argument("--to", dest="end", metavar="TIME", help="window end (ISO 8601; default now)")
    p.add_argument("--log", action="append", default=[], metavar="FILE",
                   help="prediction log to read instead of the environment's host logs; "
                        "repeatable; '-' reads stdin (kubectl logs ... | cd4ml monitor --log -)")
    p.add_argument("--no-scrape", action="store_true", help="do not read the servers' /metrics")
    p.add_argument("--report", action="store_true",
                   help="on a breach, open or update the pipeline's monitoring issue on GitHub")
    p.add_argument("--retrain-workflow", metavar="FILE",
                   help="with --report, on a breach dispatch this workflow (e.g. cd4ml.yml)")
    p.add_argument("--ref", help="the branch the retraining workflow runs on (default: main)")


def run(args: argparse.Namespace) -> int:
    from cd4ml.reporting.console import paint, print_json, table
    from cd4ml.watch import findings
    from cd4ml.watch.monitor import MonitorConfig, monitor
    from cd4ml.watch.window import window

    spec = load_pipeline(args)
    span = window(args.since, args.start, args.end)
    config = MonitorConfig(environment=args.env, window=span, logs=tuple(args.log),
                           scrape=not args.no_scrape)
    with store_with_progress(args) as store:
        result = monitor(spec, store, config)
        reported = None
        if args.report:
            from cd4ml.watch.report import report

            reported = report(spec, store, result, workflow=args.retrain_workflow, ref=args.ref)
    if args.json:
        out = result.as_dict()
        if reported is not None:
            out["report"] = reported.as_dict()
        print_json(out)
        return 1 if result.breached else 0
    print(f"{spec.name}/{result.environment} from {span.start} to {span.end}: "
          f"{result.log['predictions']} predictions, {result.log['refused']} refused, "
          f"read from {len(result.log_paths)} log(s)")
    skipped = {k: result.log[k] for k in ("other_pipeline", "not_json", "not_prediction",
                                          "truncated") if result.log[k]}
    if skipped:
        print("skipped lines: " + ", ".join(f"{n} {k.replace('_', ' ')} (e.g. "
                                            f"{result.log['examples'][k][0]})"
                                            for k, n in skipped.items()))
    if not result.versions:
        print("no predictions of this pipeline in the window")
    else:
        print(table(findings.HEADERS, [r.cells() for r in findings.rows(result)]))
    for v in result.versions:
        for note in v.notes:
            print(f"note: {spec.name}:{v.model_version}: {note}")
    if reported is not None:
        print(reported.summary)
    if result.breached:
        count = sum(len(v.breaches) for v in result.versions)
        print(paint(f"monitoring: {count} breach{'es' if count != 1 else ''}", "red"))
        return 1
    print(paint("monitoring: no breach", "green"))
    return 0
