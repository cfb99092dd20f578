"""``cd4ml push MODEL_VERSION``: push a model version's infra-validated image to the registry.

The registry login comes from CD4ML_REGISTRY_USER and CD4ML_REGISTRY_PASSWORD (never a flag,
so it never lands in a shell history or a CI log)."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, model_in_store


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("model_version", metavar="MODEL_VERSION", help="the version to push, e.g. 3, wine:3 or wine@staging")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.build import push
    from cd4ml.reporting.console import print_json

    with model_in_store(args, args.model_version) as (spec, store, model):
        result = push(spec, store, model)
    if args.json:
        print_json(result)
    else:
        print(f"pushed  {result.reference}@{result.digest}")
    return 0
