"""``cd4ml runs``: the recorded runs, newest first."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_listing, open_store, read_pipeline
from cd4ml.cli.format import duration, short, status, when


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_listing(p, limit=20)


def run(args: argparse.Namespace) -> int:
    from cd4ml.reporting.api import run_rows, seconds_between
    from cd4ml.reporting.console import print_json, table

    with open_store(args) as store:
        pipeline = read_pipeline(store, args)
        rows = run_rows(store, pipeline, limit=args.limit)
    if args.json:
        print_json([row.json() for row in rows])
        return 0
    if not rows:
        print("no runs recorded" + (f" for {pipeline}" if pipeline else ""))
        return 0
    print(table(["run", "pipeline", "status", "model", "commit", "branch", "actor", "started",
                 "duration", "cached from"],
                [(r.id, r.pipeline, status(r.status), m.version if m else None,
                  short(r.git_commit), r.branch, r.actor, when(r.started_at),
                  duration(seconds_between(r.started_at, r.ended_at)), r.reused_from)
                 for r, m in ((row.run, row.model) for row in rows)]))
    return 0
