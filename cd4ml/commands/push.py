"""``cd4ml push MODEL_VERSION``: push a model version's infra-validated image to the registry.

The registry login comes from CD4ML_REGISTRY_USER and CD4ML_REGISTRY_PASSWORD (never a flag,
so it never lands in a shell history or a CI log)."""

from __future__ import annotations

import argparse
import sys

from cd4ml.commands.common import add_json, add_pipeline, add_store, load_pipeline, open_store


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("model_version", metavar="MODEL_VERSION", help="version to push, e.g. 3 or wine:3")
    add_pipeline(p)
    add_store(p)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from cd4ml.build import push
    from cd4ml.commands.build import version_arg
    from cd4ml.console import Progress, print_json
    from cd4ml.events import listening

    spec = load_pipeline(args)
    with open_store(args) as store, listening(Progress(sys.stderr)):
        model = store.model(spec.name, version_arg(args.model_version, spec.name))
        result = push(spec, store, model)
    if args.json:
        print_json(result)
    else:
        print(f"pushed  {result.reference}@{result.digest}")
    return 0
