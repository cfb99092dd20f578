"""``cd4ml rollback --env ENV [--to VERSION]``: put the previous good version (or VERSION) back,
with the image it ran with; the version it replaces is marked bad."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, model_arg
from cd4ml.cli.deploy import act, add_actor, policy_override


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", required=True, metavar="ENV")
    p.add_argument("--to", metavar="MODEL_VERSION",
                   help="the version to put back, e.g. 3 or wine:3 (default: the previous good one)")
    add_actor(p)


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.deploy import rollback

    ref = model_arg(args.to)
    override = policy_override(args)
    return act(args, lambda spec, store: rollback(spec, store, args.env, ref, actor=args.actor,
                                                  reason=args.reason, override=override), ref)
