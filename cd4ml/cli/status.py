"""``cd4ml status``: what runs where (version, image, since when) and whether it answers now."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, load_pipeline, open_store


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", metavar="ENV", help="only this environment")
    p.add_argument("--no-probe", action="store_true", help="do not probe /health")


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.deploy import status
    from cd4ml.reporting.console import paint, print_json, table

    spec = load_pipeline(args)
    with open_store(args) as store:
        rows = status(spec, store, args.env, probe=not args.no_probe)
    if args.json:
        print_json(rows)
        return 0

    def health(r):
        if r.healthy is None:
            return r.health
        return paint("healthy", "green") if r.healthy else paint(f"DOWN ({r.health})", "red")

    print(table(["env", "target", "version", "image", "since", "by", "health"],
                [[r.environment, r.target,
                  (f"{spec.name}:{r.version}" + (" (bad)" if r.model_bad else "")) if r.version else "-",
                  r.image, r.since, r.actor, health(r)] for r in rows]))
    return 0
