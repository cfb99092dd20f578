"""``cd4ml predict``: send rows to a deployed environment and show the answer."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, load_pipeline, open_store, positive_int


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", required=True, help="the environment to ask")
    rows = p.add_mutually_exclusive_group()
    rows.add_argument("--row", help="a JSON object of feature: value (or a list of them)")
    rows.add_argument("--sample", type=positive_int, default=1,
                      help="send N rows of the pipeline's own data (default: 1)")
    p.add_argument("--request-id", help="the request id to send (default: a new one)")


def run(args: argparse.Namespace) -> int:
    from cd4ml.release.predict import parse_rows, predict, sample_rows
    from cd4ml.reporting.console import print_json

    spec = load_pipeline(args)
    if args.row:
        rows = parse_rows(args.row)
    else:
        with open_store(args) as store:
            rows = sample_rows(spec, store, args.env, args.sample)
    answer = predict(spec, args.env, rows, request_id=args.request_id)
    if args.json:
        print_json(answer)
        return 0
    print(f"{args.env} at {answer.url}: {answer.pipeline}:{answer.model_version}")
    print(f"request id {answer.request_id}  ({answer.seconds * 1000:.1f} ms)")
    for i, (row, pred) in enumerate(zip(answer.rows, answer.predictions)):
        probs = answer.probabilities[i] if answer.probabilities else None
        shown = ", ".join(f"{k}={v}" for k, v in list(row.items())[:4])
        more = ", ..." if len(row) > 4 else ""
        print(f"  {shown}{more} -> {pred}" + (f"  {probs}" if probs else ""))
    print(f"trace it: cd4ml lineage --request-id {answer.request_id}")
    return 0
