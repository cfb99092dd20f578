"""``cd4ml lineage MODEL_VERSION`` or ``--request-id ID``: data -> run -> model -> image ->
deployments, or which model answered a logged prediction."""

from __future__ import annotations

import argparse
from typing import Any

from cd4ml.cli.common import add_json, add_read_pipeline, add_store, open_store, read_pipeline
from cd4ml.cli.format import gate_word, indent, monitoring_lines, override_line, short, status, when
from cd4ml.errors import UsageError


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_store(p)
    add_json(p)
    p.add_argument("ref", nargs="?", metavar="MODEL_VERSION",
                   help="the model version to trace, e.g. wine:3, wine:latest or wine@production")
    p.add_argument("--request-id", metavar="ID",
                   help="trace a logged prediction instead: its X-Request-ID")
    p.add_argument("--log", action="append", metavar="FILE",
                   help="prediction log (JSON lines) to search; repeatable; '-' reads stdin "
                        "(default: $CD4ML_PREDICTION_LOG and the logs of every environment "
                        "deployed from here, .cd4ml/logs/)")
    add_read_pipeline(p, "the pipeline of a bare version like 3, or of a prediction whose log "
                         "does not name it (default: the only one)")


def run(args: argparse.Namespace) -> int:
    from cd4ml.refs import parse_model_ref

    if bool(args.ref) == bool(args.request_id):
        raise UsageError("give a model version (e.g. 'cd4ml lineage wine:3') or "
                         "--request-id ID, not both and not neither")
    ref = parse_model_ref(args.ref) if args.ref else None
    with open_store(args) as store:
        return _lineage(store, args, ref, read_pipeline(store, args, only=True))


def _lineage(store: Any, args: argparse.Namespace, ref: Any, pipeline: str | None) -> int:
    from cd4ml.reporting.api import lineage_json, prediction_json
    from cd4ml.reporting.console import print_json
    from cd4ml.reporting.lineage import default_log_paths, lineage, prediction_lineage

    if args.request_id:
        logs = args.log or default_log_paths()
        found = prediction_lineage(store, args.request_id, logs, pipeline)
        if args.json:
            print_json(prediction_json(found))
        else:
            print(_prediction_text(found))
            print()
            print(_lineage_text(found.lineage))
        return 0
    result = lineage(store, ref, pipeline)
    if args.json:
        print_json(lineage_json(result))
    else:
        print(_lineage_text(result))
    return 0



def _lineage_text(result: Any) -> str:
    from cd4ml.release.state import approvers_of
    from cd4ml.reporting.console import paint, table

    m, r, d = result.model, result.run, result.dataset
    out = [paint(f"lineage of {m.ref}", "bold"), ""]
    if d is not None:
        out.append(f"data        {d.path}  sha256 {d.hash}")
        out.append(f"            {d.rows} rows, {len(d.columns)} columns: {', '.join(map(str, d.columns[:12]))}"
                   + (", ..." if len(d.columns) > 12 else ""))
    else:
        out.append(f"data        sha256 {r.data_hash or '-'} (no data set recorded)")
    out.append("  ↓")
    out.append(f"run         {r.id}  {status(r.status)}  commit {r.git_commit or '-'} on "
               f"{r.branch or '-'} by {r.actor or '-'}")
    out.append(f"            spec {r.spec_hash or '-'}  started {when(r.started_at)}")
    out.append("  ↓")
    flags = ["blessed" if m.blessed else "not blessed"] + (["BAD"] if m.bad else [])
    out.append(f"model       {m.ref}  {', '.join(flags)}  gate {gate_word(result.gate)}")
    banner = override_line(result.gate)
    if banner:
        out.append(f"            {banner}")
    out.append(f"            sha256 {m.sha256}")
    out.append(f"            artifact {m.artifact_uri}")
    out.append("  ↓")
    if result.images:
        out.append("images")
        out.append(indent(table(["image", "reference", "digest", "infra", "size MB", "built"],
                                 [(short(i.image_id.removeprefix("sha256:"), 12), i.reference,
                                   i.digest, i.infra_status,
                                   None if i.size_bytes is None else round(i.size_bytes / 1e6, 1),
                                   when(i.created_at)) for i in result.images])))
    else:
        out.append("images      none built")
    out.append("  ↓")
    if result.deployments:
        out.append("deployments")
        out.append(indent(table(
            ["environment", "action", "status", "current", "target", "by", "approved by",
             "policy", "started", "url"],
            [(x.environment, x.action, x.status, "CURRENT" if x.current else "", x.target,
              x.actor, ", ".join(approvers_of(x.details or {})) or "-",
              policy_word(x.details or {}), when(x.started_at), x.url)
             for x in result.deployments])))
        for dep_id, steps in result.steps.items():
            if steps:
                out.append(f"  deployment {dep_id}, {len(steps)} step(s):")
                out += [f"    {st.status:<9} {(st.details or {}).get('summary') or st.kind}"
                        for st in steps]
    else:
        out.append("deployments none")
    out.append(f"serving now: {', '.join(result.environments) or 'nowhere'}")
    if result.monitorings:
        out += ["  ↓", *monitoring_lines(result.monitorings)]
    return "\n".join(out)


def policy_word(details: dict) -> str:
    """A deployment's policy outcome in a word: passed, OVERRIDDEN (by whom), or -."""
    if details.get("override"):
        return f"OVERRIDDEN by {details['override'].get('by')}: {details['override'].get('reason')}"
    checks = details.get("policy") or []
    return "passed" if checks and all(c.get("passed") for c in checks) else "-"


def _prediction_text(found: Any) -> str:
    from cd4ml.reporting.console import paint

    p, lin = found.prediction, found.lineage
    output = p.get("output", p.get("predictions"))
    out = [paint(f"prediction {p.get('request_id')}", "bold") + f"  at {p.get('time', '-')}",
           f"  found at   {p.get('log_location')}",
           (f"  model      {lin.model.ref}  (run {lin.run.id}, data {short(lin.run.data_hash, 12)}, "
            f"commit {short(lin.run.git_commit)})"),
           f"  inputs     {_compact(p.get('inputs'))}",
           f"  output     {_compact(output)}"]
    if p.get("probabilities") is not None:
        out.append(f"  probabilities {_compact(p.get('probabilities'))}")
    image = next((i for i in reversed(lin.images)), None)
    out.append(f"  image      {image.reference} {image.digest or ''}".rstrip() if image else "  image      -")
    if found.named:
        out.append(paint(f"  note: the log line names {found.named}, but its sha256 is "
                         f"{lin.model.ref}'s: the sha256 is what identifies the model", "yellow"))
    if found.sha256_matches is False:
        out.append(paint(f"  warning: the server's model sha256 {p.get('model_sha256')} is not the "
                         f"recorded {lin.model.sha256}", "red"))
    return "\n".join(out)


def _compact(value: Any) -> str:
    import json

    text = json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= 400 else text[:400] + " ..."

