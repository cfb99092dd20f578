"""``cd4ml build``: build, infra-validate (and push) a blessed model version's server image;
exit 1 when infra validation fails."""

from __future__ import annotations

import argparse
from typing import Any

from cd4ml.cli.common import add_commit, add_common, model_in_store


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("model_version", nargs="?", metavar="MODEL_VERSION",
                   help="the version to build (see README: model versions; default: the newest blessed one)")
    add_common(p)
    add_commit(p)
    p.add_argument("--push", action="store_true",
                   help="push to image.registry once validated (login from "
                        "CD4ML_REGISTRY_USER / CD4ML_REGISTRY_PASSWORD)")
    p.add_argument("--no-cache", dest="nocache", action="store_true",
                   help="rebuild every layer, dependencies included")


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.build import build
    from cd4ml.reporting.console import print_json

    with model_in_store(args, args.model_version, blessed=True, commit=args.commit,
                        missing="run 'cd4ml run' until its gate passes") as (spec, store, model):
        result = build(spec, store, model, push=args.push, nocache=args.nocache)
    if args.json:
        print_json({**_jsonable(result), "passed": result.passed})
    else:
        print(render(result))
    return 0 if result.passed else 1


def _jsonable(result: Any) -> dict:
    from cd4ml.reporting.console import to_jsonable

    return to_jsonable(result)


def render(result: Any) -> str:
    """The image, its size, the infra validation checks, and the digest when pushed."""
    from cd4ml.reporting.console import fmt, paint, table

    mb = 1e6
    out = [
        f"image   {result.reference}  ({result.image_id[:19]})",
        (f"size    {result.size_bytes / mb:.0f} MB, {result.added_bytes / mb:.0f} MB over "
        f"{result.base_image}"),
        (f"layers  {result.steps} steps, {result.cached_steps} from cache  "
        f"({result.seconds:.1f} s in all)"),
        f"runtime {result.runtime}: {result.runtime_reason}"
        + (f" (compile stage {result.compile_seconds:.1f} s)" if result.compile_seconds else ""),
    ]
    rows = [(paint("pass", "green") if c.passed else paint("FAIL", "red"), c.name, fmt(c.observed),
             fmt(c.limit), c.detail) for c in result.infra.checks]
    out += ["", "infra validation:", table(["status", "check", "observed", "limit", "detail"], rows)]
    if result.digest:
        out += ["", f"pushed  {result.reference}@{result.digest}"]
    verdict = ("infra validation passed" if result.passed else
               "infra validation FAILED: this image will not be pushed or deployed")
    out += ["", paint(verdict, "green" if result.passed else "red")]
    return "\n".join(out)
