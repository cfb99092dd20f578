"""``cd4ml init``: scaffold a repository from a sample of its data."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--data", required=True, help="CSV or Parquet file to learn from")
    p.add_argument("--target", required=True, help="the column to predict")
    p.add_argument("--name", help="pipeline name (default: the data file's name)")
    p.add_argument("--task", choices=("classification", "regression"),
                   help="default: inferred from the target column")
    p.add_argument("--slices", default="", help="comma-separated columns to gate per value")
    p.add_argument("--dir", default=".", help="repository to scaffold (default: here)")
    p.add_argument("--force", action="store_true", help="overwrite files that already exist")


def run(args: argparse.Namespace) -> int:
    from cd4ml.scaffold import init

    slices = tuple(s.strip() for s in args.slices.split(",") if s.strip())
    result = init(args.data, args.target, directory=args.dir, name=args.name, task=args.task,
                  slices=slices, force=args.force)
    print(f"pipeline {result.name} ({result.task}), staging on port {result.ports[0]}, "
          f"production on {result.ports[1]}")
    for p in result.written:
        print(f"  wrote   {p}")
    for p in result.updated:
        print(f"  added   {result.name} to {p}")
    for p in result.skipped:
        print(f"  kept    {p} (exists; --force overwrites)")
    print(f"next: cd4ml run -p {result.spec}   then commit and push (what CI needs: README, "
          "\"Set up cd4ml in your repository\")")
    return 0
