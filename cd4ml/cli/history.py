"""``cd4ml history [--env ENV]``: every deploy, promotion, rollback and take-down: by whom,
approved by whom, why, when, and any override of the policy; of every pipeline unless ``-p``
names one."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, open_store, pipeline_specs, positive_int, with_env


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", metavar="ENV", help="only this environment")
    p.add_argument("--limit", type=positive_int, default=50, metavar="N", help="the newest N (default: 50)")


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.state import history
    from cd4ml.reporting.console import print_json, table, to_jsonable

    specs = with_env(pipeline_specs(args), args.env)
    with open_store(args) as store:
        rows = [(spec.name, r) for spec in specs for r in history(spec, store, args.env, args.limit)]
    # newest first across pipelines, then the limit over them all
    rows = sorted(rows, key=lambda x: x[1].started_at, reverse=True)[: args.limit]
    if args.json:
        print_json([{"pipeline": name, **to_jsonable(r)} for name, r in rows])
        return 0
    if not rows:
        names = ", ".join(s.name for s in specs)
        print(f"no deployments of {names}" + (f" in {args.env}" if args.env else ""))
        return 0

    def why(r):
        if r.override:
            return (f"OVERRIDDEN by {r.override['by']}: {r.override['reason']}"
                    + (f" ({r.reason})" if r.reason and r.reason != r.override["reason"] else ""))
        return r.error or r.reason

    print(table(["#", "when", "env", "action", "version", "status", "by", "approved by", "why"],
                [[r.id, r.started_at[:19].replace("T", " "), r.environment, r.action,
                  f"{name}:{r.version}", r.status + (" *" if r.current else ""), r.actor,
                  ", ".join(r.approvers) or "-", why(r)] for name, r in rows]))
    for name, r in rows:
        if r.steps:
            print(f"\n#{r.id} {name}:{r.version} -> {r.environment}, {r.strategy}:")
            for step in r.steps:
                print(f"  {step['status']:<9} {step['summary'] or step['kind']}")
    return 0
