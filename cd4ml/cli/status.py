"""``cd4ml status``: what runs where (version, image, since when) and whether it answers now
with the recorded model; every pipeline's environments unless ``-p`` names one. Exit 1 when an
environment that should serve does not, or serves another model than the store records."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, open_store, pipeline_specs, with_env


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", metavar="ENV", help="only this environment")
    p.add_argument("--no-probe", action="store_true", help="do not probe /health")


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.state import status
    from cd4ml.reporting.console import paint, print_json, table, to_jsonable

    specs = with_env(pipeline_specs(args), args.env)
    with open_store(args) as store:
        rows = [(spec, r) for spec in specs
                for r in status(spec, store, args.env, probe=not args.no_probe)]
    code = 0 if all(r.ok for _, r in rows) else 1
    if args.json:
        print_json([{"pipeline": spec.name, **to_jsonable(r), "ok": r.ok} for spec, r in rows])
        return code

    def health(r):
        if r.identity:
            return paint(f"WRONG MODEL ({r.identity})", "red")
        if r.healthy is None:
            return r.health
        return paint("healthy", "green") if r.healthy else paint(f"DOWN ({r.health})", "red")

    def version(spec, r):
        if not r.version:
            return "-"
        return (f"{spec.name}:{r.version}" + (" (bad)" if r.model_bad else "")
                + (f" (OVERRIDDEN by {r.override['by']}: {r.override['reason']})" if r.override else ""))

    several = len(specs) > 1
    print(table(["pipeline"] * several + ["env", "target", "version", "image", "since", "by", "health"],
                [[spec.name] * several + [r.environment, r.target, version(spec, r), r.image,
                                          r.since, r.actor, health(r)] for spec, r in rows]))
    for spec, r in rows:
        if r.rollout:
            steps = r.rollout["steps"]
            last = steps[-1]["summary"] if steps else "starting"
            print(f"{r.environment}: {r.rollout['strategy']} of {spec.name}:{r.rollout['version']} "
                  f"under way (deployment {r.rollout['deployment_id']}): {last}")
    return code
