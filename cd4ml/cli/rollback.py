"""``cd4ml rollback --env ENV [--to VERSION]``: put the previous good version (or VERSION) back,
with the image it ran with; the version it replaces is marked bad."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common
from cd4ml.cli.deploy import act, add_actor, policy_override


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", required=True, metavar="ENV")
    p.add_argument("--to", metavar="VERSION",
                   help="the version to put back (default: the previous good one)")
    add_actor(p)


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.deploy import rollback

    override = policy_override(args)
    return act(args, lambda spec, store: rollback(spec, store, args.env, args.to, actor=args.actor,
                                                  reason=args.reason, override=override))
