"""``cd4ml status``: what runs where (version, image, since when) and whether it answers now;
every pipeline's environments unless ``-p`` names one."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, open_store, pipeline_specs, with_env


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", metavar="ENV", help="only this environment")
    p.add_argument("--no-probe", action="store_true", help="do not probe /health")


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.deploy import status
    from cd4ml.reporting.console import paint, print_json, table, to_jsonable

    specs = with_env(pipeline_specs(args), args.env)
    with open_store(args) as store:
        rows = [(spec, r) for spec in specs
                for r in status(spec, store, args.env, probe=not args.no_probe)]
    if args.json:
        print_json([{"pipeline": spec.name, **to_jsonable(r)} for spec, r in rows])
        return 0

    def health(r):
        if r.healthy is None:
            return r.health
        return paint("healthy", "green") if r.healthy else paint(f"DOWN ({r.health})", "red")

    several = len(specs) > 1
    print(table(["pipeline"] * several + ["env", "target", "version", "image", "since", "by", "health"],
                [[spec.name] * several + [
                    r.environment, r.target,
                    (f"{spec.name}:{r.version}" + (" (bad)" if r.model_bad else "")) if r.version else "-",
                    r.image, r.since, r.actor, health(r)] for spec, r in rows]))
    return 0
