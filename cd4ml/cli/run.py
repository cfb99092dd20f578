"""``cd4ml run``: the whole pipeline through the gate, with progress and a summary."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, add_override, pipeline_and_override, store_with_progress


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--force", action="store_true", help="retrain even if nothing changed")
    add_override(p)
    p.add_argument("--report", action="store_true",
                   help="report to GitHub (status, check run, PR comment, step summary); without "
                        "GITHUB_TOKEN the report goes to a file and stdout")
    p.add_argument("--strict", action="store_true", help="with --report: a GitHub failure fails the command")


def run(args: argparse.Namespace) -> int:
    from cd4ml.reporting.console import print_json
    from cd4ml.stages import pipeline

    spec, by, reason = pipeline_and_override(args)
    config = None
    if args.report:
        from cd4ml.integrations.github import GitHubConfig
        from cd4ml.reporting.post import report_started

        config = GitHubConfig.from_env(strict=args.strict)
        report_started(spec, config=config)
    with store_with_progress(args) as store:
        try:
            result = pipeline.run(spec, store, force=args.force, override_by=by, reason=reason)
        finally:
            # a run that crashed is reported too: the pull request must not stay pending
            if config is not None:
                from cd4ml.reporting.post import report_run

                reported = report_run(spec, store, config=config)
        from cd4ml.reporting.summary import summarize

        summary = summarize(store, result.run.id)
    if args.json:
        print_json({"run": result.run, "cached": result.cached, "status": result.status,
                    "model": result.model, "seconds": result.seconds, "summary": summary})
    else:
        from cd4ml.reporting.console import table
        from cd4ml.reporting.views import summary_text

        if result.stages:
            print(table(["stage", "result", "seconds"], [(s, o, f"{t:.2f}") for s, o, t in result.stages]))
            print()
        print(summary_text(summary))
        if config is not None and not reported.posted:
            print(f"\nreport written to {reported.file} (not posted to GitHub)")
    return 0 if result.passed else 1
