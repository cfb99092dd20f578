"""What every command shares: the pipeline and store options, and opening them."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cd4ml.errors import SpecError


def setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def add_pipeline(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pipeline", metavar="SPEC",
                   help="pipeline spec: a path or a name under pipelines/ (default: the only one)")


def add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="URL", help="store URL (default: $CD4ML_STORE_URL or "
                   "sqlite:///.cd4ml/cd4ml.db)")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def spec_path(arg: str | None) -> Path:
    """A spec path from ``--pipeline``: a file, a name under pipelines/, or the only spec there."""
    if arg:
        p = Path(arg)
        if p.suffix in (".yaml", ".yml") or p.exists():
            return p
        return Path("pipelines") / f"{arg}.yaml"
    found = sorted(Path("pipelines").glob("*.yaml")) + sorted(Path("pipelines").glob("*.yml"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise SpecError("no pipelines/*.yaml here; pass --pipeline PATH or run 'cd4ml init'")
    raise SpecError(f"several pipelines ({', '.join(p.stem for p in found)}); choose one with --pipeline NAME")


def load_pipeline(args: argparse.Namespace):
    from cd4ml.spec import load_spec

    return load_spec(spec_path(getattr(args, "pipeline", None)))


def open_store(args: argparse.Namespace):
    from cd4ml.store import Store

    return Store(getattr(args, "store", None))
