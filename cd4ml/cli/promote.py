"""``cd4ml promote MODEL_VERSION --to ENV [--approved-by USER]``: move the version that runs
healthy in the previous environment into ENV, once approved."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, person
from cd4ml.cli.deploy import act, add_actor, policy_override


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("version", metavar="MODEL_VERSION", help="e.g. 5, wine:5 or wine@staging (the version running there)")
    p.add_argument("--to", required=True, metavar="ENV", help="the environment to promote into")
    p.add_argument("--approved-by", metavar="USER", type=person,
                   help="record USER's approval (checked: GitHub with GITHUB_TOKEN, else git)")
    add_actor(p)


def run(args: argparse.Namespace) -> int:
    from cd4ml.refs import parse_model_ref
    from cd4ml.release.deploy import promote

    ref = parse_model_ref(args.version)
    override = policy_override(args)
    return act(args, lambda spec, store: promote(spec, store, ref, args.to,
                                                 approved_by=args.approved_by, actor=args.actor,
                                                 reason=args.reason, override=override), ref)
