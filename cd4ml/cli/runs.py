"""``cd4ml runs``: the recorded runs, newest first."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_listing, listed
from cd4ml.cli.format import duration, short, status, when


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_listing(p, limit=20)


def run(args: argparse.Namespace) -> int:
    from cd4ml.reporting.api import run_rows, seconds_between
    from cd4ml.reporting.console import table

    rows = listed(args, run_rows, "runs", lambda rows: [row.json() for row in rows])
    if rows is None:
        return 0
    print(table(["run", "pipeline", "status", "model", "commit", "branch", "actor", "started",
                 "duration", "cached from"],
                [(r.id, r.pipeline, status(r.status), m.version if m else None,
                  short(r.git_commit), r.branch, r.actor, when(r.started_at),
                  duration(seconds_between(r.started_at, r.ended_at)), r.reused_from)
                 for r, m in ((row.run, row.model) for row in rows)]))
    return 0
