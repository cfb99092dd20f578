"""``cd4ml down --env ENV``: take an environment down on its target (every container, stack
or Kubernetes object cd4ml made there for this project and pipeline), and record it."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common
from cd4ml.cli.deploy import act, add_actor


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", required=True, metavar="ENV")
    add_actor(p, override=False)


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.deploy import down

    return act(args, lambda spec, store: down(spec, store, args.env, actor=args.actor,
                                              reason=args.reason), None)
