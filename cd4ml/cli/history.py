"""``cd4ml history [--env ENV]``: every deploy, promotion and rollback, by whom, why and when."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, load_pipeline, open_store, positive_int


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", metavar="ENV", help="only this environment")
    p.add_argument("--limit", type=positive_int, default=50, metavar="N", help="the newest N (default: 50)")


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.deploy import history
    from cd4ml.reporting.console import print_json, table

    spec = load_pipeline(args)
    with open_store(args) as store:
        rows = history(spec, store, args.env, args.limit)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"no deployments of {spec.name}" + (f" in {args.env}" if args.env else ""))
        return 0
    print(table(["#", "when", "env", "action", "version", "status", "by", "why"],
                [[r.id, r.started_at[:19].replace("T", " "), r.environment, r.action,
                  f"{spec.name}:{r.version}", r.status + (" *" if r.current else ""), r.actor,
                  r.error or r.reason] for r in rows]))
    return 0
