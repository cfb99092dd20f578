"""``cd4ml runs``: the recorded runs, newest first."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_listing, open_store, read_pipeline
from cd4ml.cli.format import duration, seconds, short, status, when


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_listing(p, limit=20)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cd4ml.reporting.console import print_json, table, to_jsonable
    from cd4ml.store.liveness import shown_status

    with open_store(args) as store:
        pipeline = read_pipeline(store, args)
        # a run whose process was killed shows as abandoned before the next run marks it so
        runs = [replace(r, status=shown_status(r)) for r in store.runs(pipeline, limit=args.limit)]
        rows = [(r, store.model_for_run(r.reused_from or r.id), seconds(r.started_at, r.ended_at))
                for r in runs]
    if args.json:
        print_json([{**to_jsonable(r), "model_version": m.version if m else None,
                     "duration_seconds": s} for r, m, s in rows])
        return 0
    if not rows:
        print("no runs recorded" + (f" for {pipeline}" if pipeline else ""))
        return 0
    print(table(["run", "pipeline", "status", "model", "commit", "branch", "actor", "started",
                 "duration", "cached from"],
                [(r.id, r.pipeline, status(r.status), m.version if m else None,
                  short(r.git_commit), r.branch, r.actor, when(r.started_at), duration(s),
                  r.reused_from) for r, m, s in rows]))
    return 0
