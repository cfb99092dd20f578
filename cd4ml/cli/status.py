"""``cd4ml status``: what runs where (version, image, since when) and whether it answers now
with the recorded model; exit 1 when an environment that should serve does not, or serves
another model than the store records."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, load_pipeline, open_store


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", metavar="ENV", help="only this environment")
    p.add_argument("--no-probe", action="store_true", help="do not probe /health")


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.state import status
    from cd4ml.reporting.console import paint, print_json, table, to_jsonable

    spec = load_pipeline(args)
    with open_store(args) as store:
        rows = status(spec, store, args.env, probe=not args.no_probe)
    code = 0 if all(r.ok for r in rows) else 1
    if args.json:
        print_json([{**to_jsonable(r), "ok": r.ok} for r in rows])
        return code

    def health(r):
        if r.identity:
            return paint(f"WRONG MODEL ({r.identity})", "red")
        if r.healthy is None:
            return r.health
        return paint("healthy", "green") if r.healthy else paint(f"DOWN ({r.health})", "red")

    def version(r):
        if not r.version:
            return "-"
        return (f"{spec.name}:{r.version}" + (" (bad)" if r.model_bad else "")
                + (f" (OVERRIDDEN by {r.override['by']}: {r.override['reason']})" if r.override else ""))

    print(table(["env", "target", "version", "image", "since", "by", "health"],
                [[r.environment, r.target, version(r), r.image, r.since, r.actor, health(r)]
                 for r in rows]))
    return code
