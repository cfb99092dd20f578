"""``cd4ml show REF``: everything recorded about one run or model version."""

from __future__ import annotations

import argparse
from typing import Any

from cd4ml.cli.common import add_json, add_read_pipeline, add_store, open_store, read_pipeline
from cd4ml.cli.format import duration, monitoring_lines, override_line, status, when


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_store(p)
    add_json(p)
    p.add_argument("ref", metavar="REF",
                   help="a model version (e.g. wine:3, wine:latest, wine@production, or 3 of -p) "
                        "or a run id (or a unique prefix of one)")
    add_read_pipeline(p, "the pipeline of a bare version like 3 (default: the only one)")


def run(args: argparse.Namespace) -> int:
    from cd4ml.reporting.api import deployed_now, show_json
    from cd4ml.reporting.console import print_json
    from cd4ml.reporting.lineage import resolve
    from cd4ml.reporting.summary import summarize

    with open_store(args) as store:
        pipeline = read_pipeline(store, args, only=True)
        if args.json:
            print_json(show_json(store, args.ref, pipeline))
            return 0
        target = resolve(store, args.ref, pipeline)
        summary = summarize(store, target.run.id)
        model = target.model or summary.model
        source = summary.source
        dataset = store.dataset(source.data_hash) if source.data_hash else None
        deployed = deployed_now(store).get(model.id, []) if model else []
        monitored = list(reversed(store.monitorings(model_version_id=model.id, limit=20))) \
            if model else []
        approvals = store.approvals(model.id) if model else []
    print(_show_text(summary, model, dataset, deployed, approvals))
    if monitored:
        print("\n".join(monitoring_lines(monitored)))
    return 0


def _show_text(summary: Any, model: Any, dataset: Any, deployed: list[str],
               approvals: list[Any]) -> str:
    from cd4ml.reporting.api import seconds_between
    from cd4ml.reporting.console import fmt, paint
    from cd4ml.reporting.views import gate_lines, metric_lines, validation_lines

    r, src = summary.run, summary.source
    out = [paint(f"run {r.id}", "bold") + f"  pipeline {r.pipeline}  status {status(r.status)}"]
    banner = override_line(summary.gate)
    if banner:
        out.append(banner)
    if summary.cached:
        out.append(f"(served from the cache: results of run {src.id}, whose inputs were the same)")
    facts = [
        ("kind", r.kind), ("commit", src.git_commit), ("branch", src.branch), ("actor", r.actor),
        ("started", when(r.started_at)), ("ended", when(r.ended_at)),
        ("duration", duration(seconds_between(r.started_at, r.ended_at))),
        ("spec hash", src.spec_hash), ("code hash", src.code_hash), ("cache key", src.cache_key),
        ("reused from", r.reused_from), ("tags", r.tags or None),
    ]
    out += [f"  {k:<12} {fmt(v)}" for k, v in facts if v is not None]
    if r.error:
        out.append(paint(f"  error        {r.error}", "red"))
    if src.params:
        out.append("params: " + ", ".join(f"{k}={fmt(v)}" for k, v in sorted(src.params.items())))
    if dataset is not None:
        out.append(f"data: {dataset.path} ({dataset.format}, {dataset.rows} rows, "
                   f"{len(dataset.columns)} columns) sha256 {dataset.hash}")
    elif src.data_hash:
        out.append(f"data: sha256 {src.data_hash}")
    if model is not None:
        flags = ["blessed" if model.blessed else "not blessed"] + (["BAD"] if model.bad else [])
        out.append(f"model: {model.ref} ({', '.join(flags)}) sha256 {model.sha256}")
        if summary.state:
            out.append(f"  now: {summary.state}")
        out.append(f"  artifact {model.artifact_uri}")
        out.append(f"  deployed now: {', '.join(deployed) or '-'}")
        out += [f"  approved for {a.environment} by {a.approver} ({a.source}): "
                f"{(a.details or {}).get('check') or '-'}" for a in approvals]
    else:
        out.append("model: none")
    out += validation_lines(summary) + metric_lines(summary) + gate_lines(summary)
    return "\n".join(out)

