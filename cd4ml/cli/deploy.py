"""``cd4ml deploy --env ENV [MODEL_VERSION]``: deploy a blessed, infra-validated version and wait
until it serves; exit 1 when it did not (the previous version is put back)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from cd4ml.cli.common import (
    add_commit,
    add_common,
    chosen_model,
    line_of_text,
    load_pipeline,
    model_arg,
    person,
    store_with_progress,
)
from cd4ml.errors import SpecError

if TYPE_CHECKING:
    from cd4ml.refs import ModelRef


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", required=True, metavar="ENV", help="the environment (from the spec)")
    p.add_argument("version", nargs="?", metavar="MODEL_VERSION",
                   help="e.g. 5, wine:5 or wine@staging (default: the newest blessed version "
                        "not marked bad)")
    add_commit(p)
    p.add_argument("--approved-by", metavar="USER", type=person,
                   help="record USER's approval (checked: GitHub with GITHUB_TOKEN, else git)")
    add_actor(p)


def add_actor(p: argparse.ArgumentParser, override: bool = True) -> None:
    p.add_argument("--reason", type=line_of_text,
                   help="why (recorded with the deployment; required with --override)")
    p.add_argument("--actor", metavar="USER", type=person,
                   help="who acts (default: $GITHUB_ACTOR, git user.name, the login name)")
    if override:
        p.add_argument("--override", action="store_true",
                       help="break glass: release past the environment's policy (order, "
                            "approval, marked bad), recorded with --reason and --by")
        p.add_argument("--by", metavar="USER", type=person, help="who overrides (with --override)")


def policy_override(args: argparse.Namespace) -> Any:
    """The Override the flags ask for, or None; a half-given one is a usage error."""
    from cd4ml.cli.common import overrider
    from cd4ml.release.policy import Override

    if not args.override:
        if args.by:
            raise SpecError("--by only goes with --override")
        return None
    by, reason = overrider(args)
    return Override(by or "", reason or "")


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.deploy import deploy

    ref = model_arg(args.version)
    override = policy_override(args)

    def fn(spec: Any, store: Any) -> Any:
        version = chosen_model(store, spec, ref, commit=args.commit).version if args.commit else ref
        return deploy(spec, store, args.env, version, actor=args.actor, reason=args.reason,
                      approved_by=args.approved_by, override=override)

    return act(args, fn, ref)


def act(args: argparse.Namespace, fn: Callable[[Any, Any], Any], ref: ModelRef | None) -> int:
    """Run a deploy-like action on the spec of ``-p`` (or of the pipeline ``ref`` names) with
    progress on stderr (and GitHub Deployments when a token is set), then print its result; a
    failed release still prints what was put back."""
    from cd4ml.release.deploy import DeployFailed

    spec = load_pipeline(args, ref)
    with store_with_progress(args) as store, ExitStack() as stack:
        reporter = _github()
        if reporter is not None:
            from cd4ml.events import listening
            from cd4ml.release.ghdeploy import github_listener

            stack.enter_context(listening(github_listener(reporter)))
        try:
            result = fn(spec, store)
        except DeployFailed as e:
            if args.json:
                show(e.result, True)
            raise
    show(result, args.json)
    return 0


def _github() -> Any:
    import os

    if not os.environ.get("GITHUB_TOKEN"):
        return None
    from cd4ml.integrations.github import GitHubReporter

    reporter = GitHubReporter()
    return reporter if reporter.enabled else None


def show(result: Any, as_json: bool) -> None:
    from cd4ml.reporting.console import paint, print_json
    from cd4ml.states import DeployAction, DeploymentStatus

    if as_json:
        print_json(result)
        return
    mark = {DeploymentStatus.HEALTHY: ("✓", "green"), DeploymentStatus.UNCHANGED: ("=", "green"),
            DeploymentStatus.DOWN: ("↓", "yellow")}.get(result.status, ("✗", "red"))
    print(f"{paint(mark[0], mark[1])} {result.message}")
    if result.action == DeployAction.DOWN:
        return
    print(f"  {result.action} {result.pipeline}:{result.version} -> {result.environment} "
          f"({result.target}), image {result.image}"
          + (f", deployment #{result.deployment_id}" if result.deployment_id else ""))
    if result.override:
        o = result.override
        print(paint(f"  OVERRIDDEN by {o['by']}: {o['reason']} (skipped: "
                    f"{'; '.join(o.get('skipped') or [])})", "yellow"))
