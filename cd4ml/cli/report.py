"""``cd4ml report``: post a run's results to GitHub (commit status, check run, the pull-request
comment, the step summary); with no token, write the report to a file and print it."""

from __future__ import annotations

import argparse
import sys

from cd4ml.cli.common import add_common, load_pipeline, store_with_progress


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("run_id", nargs="?", metavar="RUN_ID",
                   help="the run to report (default: the pipeline's latest)")
    add_common(p)
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 2) when GitHub cannot be told, instead of warning")
    p.add_argument("--repo", metavar="OWNER/NAME", help="repository (default: $GITHUB_REPOSITORY)")
    p.add_argument("--sha", help="commit to report on (default: the pull request's head, "
                   "$GITHUB_SHA, or the run's commit)")
    p.add_argument("--pr", type=int, metavar="N",
                   help="pull request to comment on (default: from $GITHUB_EVENT_PATH)")
    p.add_argument("--api-url", metavar="URL", help="GitHub API address (default: $GITHUB_API_URL)")
    p.add_argument("--server-url", metavar="URL",
                   help="GitHub web address, for links (default: $GITHUB_SERVER_URL)")
    p.add_argument("--workflow-run", metavar="ID",
                   help="the workflow run to link to (default: $GITHUB_RUN_ID)")
    p.add_argument("--output", metavar="FILE",
                   help="also write the report here (without a token it goes to "
                        ".cd4ml/reports/RUN.md)")


def run(args: argparse.Namespace) -> int:
    from cd4ml.integrations.github import GitHubConfig
    from cd4ml.reporting.console import print_json
    from cd4ml.reporting.post import report_run

    config = GitHubConfig.from_env(
        repository=args.repo, sha=args.sha, pr=args.pr, api_url=args.api_url,
        server_url=args.server_url, run_id=args.workflow_run, strict=args.strict or None)
    spec = load_pipeline(args)
    with store_with_progress(args) as store:
        result = report_run(spec, store, args.run_id, config, output=args.output)
    if args.json:
        print_json(result)
    elif result.posted:
        print(f"{result.pipeline}: {result.title}")
        print(f"  commit status cd4ml/{result.pipeline}: {result.state} on {result.sha}")
        if result.check_run_url:
            print(f"  check run: {result.check_run_url}")
        if result.comment_url:
            print(f"  pull-request comment: {result.comment_url}")
        if result.file:
            print(f"  report: {result.file}")
    else:
        sys.stdout.write(result.markdown)
        print(f"(report written to {result.file})", file=sys.stderr)
    return 0
