"""``cd4ml models``: the model versions, newest first, and where each serves now."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_listing, listed
from cd4ml.cli.format import short, when


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_listing(p, limit=50)


def run(args: argparse.Namespace) -> int:
    from cd4ml.reporting.api import models_json
    from cd4ml.reporting.console import table

    models = listed(args, models_json, "model versions")
    if models is None:
        return 0
    rows = []
    for m in models:
        gate = m["gate"]
        blessed = "yes" if m["blessed"] else "no"
        if gate is not None and gate["overridden"]:
            blessed += f" (OVERRIDDEN by {gate['override_by']})"
        rows.append((m["ref"], m["run_id"], blessed, "BAD" if m["bad"] else "",
                     short(m["sha256"], 12), when(m["created_at"]),
                     ", ".join(m["deployed"]) or "-"))
    print(table(["model", "run", "blessed", "bad", "sha256", "created", "deployed now"], rows))
    return 0
