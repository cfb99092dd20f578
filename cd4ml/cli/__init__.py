"""The ``cd4ml`` command: parses arguments, calls the library, prints. Nothing else.

Each command lives in ``cd4ml/cli/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; only the chosen command's module is imported, so ``cd4ml --help`` never
loads pandas, scikit-learn, great-expectations or docker.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from cd4ml import __version__
from cd4ml.errors import Cd4mlError
from cd4ml.secrets import redact

#: name -> (module, one-line help), in the order ``--help`` lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "validate, train, evaluate and gate a pipeline (cached when inputs are unchanged)"),
    "validate": ("validate", "check the data against its expectation suite and for drift"),
    "train": ("train", "train a model version from the pipeline spec"),
    "evaluate": ("evaluate", "score a model version and production on the held-out rows"),
    "gate": ("gate", "decide whether a run's model may be promoted (blessed)"),
    "runs": ("runs", "list recorded runs"),
    "models": ("models", "list model versions"),
    "show": ("show", "show one run or model version (a run id or e.g. wine:3)"),
    "lineage": ("lineage", "data -> run -> model -> image -> deployments, or a prediction's origin"),
    "compare": ("compare", "metrics of two runs or model versions side by side"),
    "serve": ("serve", "serve a model version over HTTP, without Docker"),
    "build": ("build", "build, infra-validate (and push) the model server image"),
    "push": ("push", "push a model version's image to the registry"),
    "render": ("render", "render an environment's infrastructure files for review"),
    "deploy": ("deploy", "deploy a blessed, infra-validated model version to an environment"),
    "promote": ("promote", "promote a model version to the next environment, with approval"),
    "rollback": ("rollback", "put the previous good version back in an environment"),
    "down": ("down", "take an environment down (recorded; nothing is deployed there after)"),
    "predict": ("predict", "send rows to a deployed environment and show the answer"),
    "status": ("status", "what runs where: version, image, since when, health"),
    "history": ("history", "every deploy, promotion and rollback of an environment"),
    "monitor": ("monitor", "judge what a deployed model met and how it did, from its prediction log"),
    "labels": ("labels", "add ground truth for logged predictions (labels add FILE)"),
    "ui": ("ui", "a read-only web view of the store: runs, compare, lineage, environments"),
    "report": ("report", "post a run's results to GitHub (status, check run, PR comment)"),
    "init": ("init", "scaffold cd4ml in a repository from a sample of your data"),
    "preflight": ("preflight", "in CI: whether a job has the configuration it needs, else what to set"),
}


def _parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(
        prog="cd4ml", description="Continuous delivery for machine learning, driven from CI.",
        epilog="Exit codes: 0 ok, 1 a validation, gate or deploy said no, 2 a usage or config "
               "error (or any other failure; --debug shows its traceback).")
    parser.add_argument("--version", action="version", version=f"cd4ml {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, sub


def _chosen(argv: list[str]) -> str | None:
    for a in argv:
        if not a.startswith("-"):
            return a if a in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, sub = _parser()
    chosen = _chosen(argv)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if name == chosen:
            mod = importlib.import_module(f"cd4ml.cli.{module}")
            mod.add_arguments(p, name)
            p.set_defaults(_run=mod.run)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from cd4ml.cli.common import setup_logging
    from cd4ml.cli.streams import readers_may_leave

    with readers_may_leave():
        setup_logging(args.debug)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args._run(args) or 0)
    except Cd4mlError as e:
        if args.debug:  # the traceback, and still the exit code a script relies on
            traceback.print_exc()
        print(f"cd4ml: error: {redact(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cd4ml: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0  # a write past the streams' guard (e.g. to a raw descriptor): the reader left
    except Exception as e:  # noqa: BLE001 -- the one place every failure becomes one line
        # a path that cannot be read or written, or a bug: one line all the same, never a
        # traceback unless asked for
        if args.debug:
            traceback.print_exc()
        print(f"cd4ml: error: {redact(_one_line(e))}", file=sys.stderr)
        return 2


def _one_line(e: Exception) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror}; check the path and its permissions"
    text = str(e).strip().splitlines()
    return (f"unexpected {type(e).__name__}{': ' + text[0] if text else ''}; "
            "rerun with --debug for the traceback")


if __name__ == "__main__":
    sys.exit(main())
