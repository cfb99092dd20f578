"""``cd4ml preflight``: can this CI job do its work, or what must be configured first?

Always exits 0 when the spec is valid: a job whose configuration is missing is skipped, not
failed. In GitHub Actions it writes ``ready=true|false`` to ``$GITHUB_OUTPUT`` (the workflows'
later steps run only when ready), what to set to ``$GITHUB_STEP_SUMMARY``, and a notice.
"""

from __future__ import annotations

import argparse
import os

from cd4ml.cli.common import add_json, add_pipeline, load_pipeline


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_pipeline(p)
    add_json(p)
    p.add_argument("--env", dest="environment", metavar="ENV",
                   help="the environment the job deploys to (default: the pipeline job)")


def _append(variable: str, text: str) -> None:
    path = os.environ.get(variable)
    if path and text:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)


def _escape(text: str, property: bool = False) -> str:
    """A workflow command's escaping (GitHub's toolkit: ``%``, CR, LF; in a property ``:`` and ``,``
    too)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property else text


def run(args: argparse.Namespace) -> int:
    from cd4ml.preflight import preflight, summary

    result = preflight(load_pipeline(args), args.environment)
    _append("GITHUB_OUTPUT", f"ready={'true' if result.ready else 'false'}\n")
    _append("GITHUB_STEP_SUMMARY", summary(result))
    if args.json:
        from dataclasses import asdict

        from cd4ml.reporting.console import print_json

        print_json({**asdict(result), "ready": result.ready})
        return 0
    what = (f"deploying {result.pipeline} to {result.environment}" if result.environment
            else f"the {result.pipeline} pipeline")
    if not result.missing:
        print(f"{what}: everything it needs is configured")
        return 0
    verdict = "skipped" if not result.ready else "runs, but its records are not kept"
    if os.environ.get("GITHUB_ACTIONS") == "true":
        title = _escape(f"cd4ml: {what} {verdict}", property=True)
        print(f"::notice title={title}::"
              + _escape("set " + "; ".join(m.where.split(" (")[0] for m in result.missing)))
    print(f"{what}: {verdict}; set:")
    for m in result.missing:
        print(f"  - {m.what}: {m.where}")
    return 0
