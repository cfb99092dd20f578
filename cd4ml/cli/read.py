"""The read side of the store: ``cd4ml runs``, ``models``, ``show``, ``lineage`` and ``compare``.

One module serves the five commands (they share their rendering); ``add_arguments`` and ``run``
dispatch on the command name. Nothing here writes to the store.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from cd4ml.cli.common import add_json, add_store, open_store, positive_int
from cd4ml.errors import Cd4mlError


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_store(p)
    add_json(p)
    if name in ("runs", "models"):
        p.add_argument("-p", "--pipeline", metavar="NAME",
                       help="only this pipeline (its name, or the path of its spec)")
        p.add_argument("--limit", type=positive_int, default=20 if name == "runs" else 50, metavar="N",
                       help="show the newest N (default: %(default)s)")
    elif name == "show":
        p.add_argument("ref", metavar="RUN_ID|PIPELINE:VERSION",
                       help="a run id (or a unique prefix) or a model version like wine:3")
    elif name == "lineage":
        p.add_argument("ref", nargs="?", metavar="PIPELINE:VERSION",
                       help="the model version to trace, e.g. wine:3")
        p.add_argument("--request-id", metavar="ID",
                       help="trace a logged prediction instead: its X-Request-ID")
        p.add_argument("--log", action="append", metavar="FILE",
                       help="prediction log (JSON lines) to search; repeatable; '-' reads stdin "
                            "(default: $CD4ML_PREDICTION_LOG and the logs of every environment "
                            "deployed from here, .cd4ml/logs/)")
        p.add_argument("-p", "--pipeline", metavar="NAME",
                       help="the pipeline, when the prediction log does not name it")
    elif name == "compare":
        p.add_argument("a", metavar="A", help="a run id or PIPELINE:VERSION")
        p.add_argument("b", metavar="B", help="a run id or PIPELINE:VERSION")
        p.add_argument("--csv", metavar="FILE", help="also write the table as CSV ('-': stdout)")
    p.set_defaults(_read_command=name)


def run(args: argparse.Namespace) -> int:
    command = {"runs": _runs, "models": _models, "show": _show, "lineage": _lineage,
               "compare": _compare}[args._read_command]
    with open_store(args) as store:
        return command(store, args)


# ----------------------------------------------------------------------------- helpers


def _pipeline_name(arg: str | None) -> str | None:
    """``-p`` takes a pipeline name, or a spec path whose name is read (and checked)."""
    if not arg:
        return None
    if arg.endswith((".yaml", ".yml")) or Path(arg).is_file():
        from cd4ml.spec import load_spec

        return load_spec(arg).name
    return arg


def _time(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def _when(stamp: str | None) -> str | None:
    t = _time(stamp)
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else stamp


def _seconds(start: str | None, end: str | None) -> float | None:
    a, b = _time(start), _time(end)
    return (b - a).total_seconds() if a and b else None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _short(value: str | None, n: int = 8) -> str | None:
    return value[:n] if value else value


def _gate_word(gate: Any) -> str:
    """A gate verdict in a few words; an override is never hidden."""
    if gate is None:
        return "not gated"
    if gate.overridden:
        return f"OVERRIDDEN by {gate.override_by}"
    return "passed" if gate.passed else "failed"


def _override_line(gate: Any) -> str | None:
    from cd4ml.reporting.console import paint

    if gate is None or not gate.overridden:
        return None
    return paint(f"gate OVERRIDDEN by {gate.override_by}: {gate.override_reason}", "yellow")


def _status(status: str) -> str:
    from cd4ml.reporting.console import paint

    colour = {"succeeded": "green", "failed": "red", "gate_failed": "red",
              "validation_failed": "red", "running": "yellow", "abandoned": "red"}.get(status)
    return paint(status, colour) if colour else status


def _deployed(store: Any, pipeline: str | None = None) -> dict[int, list[str]]:
    """model version id -> environments it serves in now."""
    where: dict[int, list[str]] = {}
    for d in store.current_deployments(pipeline):
        where.setdefault(d.model_version_id, []).append(d.environment)
    return where


# ----------------------------------------------------------------------------- runs, models


def _runs(store: Any, args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cd4ml.reporting.console import print_json, table, to_jsonable
    from cd4ml.store.liveness import shown_status

    # a run whose process was killed shows as abandoned before the next run marks it so
    runs = [replace(r, status=shown_status(r))
            for r in store.runs(_pipeline_name(args.pipeline), limit=args.limit)]
    rows = []
    for r in runs:
        model = store.model_for_run(r.reused_from or r.id)
        rows.append((r, model, _seconds(r.started_at, r.ended_at)))
    if args.json:
        print_json([{**to_jsonable(r), "model_version": m.version if m else None,
                     "duration_seconds": s} for r, m, s in rows])
        return 0
    if not rows:
        print("no runs recorded" + (f" for {args.pipeline}" if args.pipeline else ""))
        return 0
    print(table(["run", "pipeline", "status", "model", "commit", "branch", "actor", "started",
                 "duration", "cached from"],
                [(r.id, r.pipeline, _status(r.status), m.version if m else None,
                  _short(r.git_commit), r.branch, r.actor, _when(r.started_at), _duration(s),
                  r.reused_from) for r, m, s in rows]))
    return 0


def _models(store: Any, args: argparse.Namespace) -> int:
    from cd4ml.reporting.console import print_json, table, to_jsonable

    pipeline = _pipeline_name(args.pipeline)
    models = store.models(pipeline, limit=args.limit)
    deployed = _deployed(store, pipeline)
    gates = {m.id: store.gate(m.run_id) for m in models}
    if args.json:
        print_json([{**to_jsonable(m), "ref": m.ref, "deployed": deployed.get(m.id, []),
                     "gate": _gate_json(gates[m.id])} for m in models])
        return 0
    if not models:
        print("no model versions recorded" + (f" for {args.pipeline}" if args.pipeline else ""))
        return 0
    rows = []
    for m in models:
        gate = gates[m.id]
        blessed = "yes" if m.blessed else "no"
        if gate is not None and gate.overridden:
            blessed += f" (OVERRIDDEN by {gate.override_by})"
        rows.append((m.ref, m.run_id, blessed, "BAD" if m.bad else "", _short(m.sha256, 12),
                     _when(m.created_at), ", ".join(deployed.get(m.id, [])) or "-"))
    print(table(["model", "run", "blessed", "bad", "sha256", "created", "deployed now"], rows))
    return 0


def _gate_json(gate: Any) -> dict | None:
    from cd4ml.reporting.console import to_jsonable

    return None if gate is None else {**to_jsonable(gate), "blessed": gate.blessed}


# ----------------------------------------------------------------------------- show


def _show(store: Any, args: argparse.Namespace) -> int:
    from cd4ml.reporting.console import print_json, to_jsonable
    from cd4ml.reporting.lineage import resolve
    from cd4ml.reporting.summary import summarize

    target = resolve(store, args.ref)
    summary = summarize(store, target.run.id)
    model = target.model or summary.model
    source = summary.source
    dataset = store.dataset(source.data_hash) if source.data_hash else None
    deployed = _deployed(store).get(model.id, []) if model else []
    approvals = store.approvals(model.id) if model else []
    if args.json:
        print_json({
            "run": to_jsonable(summary.run), "source_run": to_jsonable(source),
            "cached": summary.cached, "model": to_jsonable(model) if model else None,
            "dataset": to_jsonable(dataset) if dataset else None,
            "validation": to_jsonable(summary.validation) if summary.validation else None,
            "metrics": [{**to_jsonable(m), "delta": m.delta} for m in summary.metrics],
            "gate": _gate_json(summary.gate), "deployed": deployed, "state": summary.state,
            "approvals": [to_jsonable(a) for a in approvals],
        })
        return 0
    print(_show_text(summary, model, dataset, deployed, approvals))
    return 0


def _show_text(summary: Any, model: Any, dataset: Any, deployed: list[str],
               approvals: list[Any]) -> str:
    from cd4ml.reporting.console import fmt, paint
    from cd4ml.reporting.views import gate_lines, metric_lines, validation_lines

    r, src = summary.run, summary.source
    out = [paint(f"run {r.id}", "bold") + f"  pipeline {r.pipeline}  status {_status(r.status)}"]
    banner = _override_line(summary.gate)
    if banner:
        out.append(banner)
    if summary.cached:
        out.append(f"(served from the cache: results of run {src.id}, whose inputs were the same)")
    facts = [
        ("kind", r.kind), ("commit", src.git_commit), ("branch", src.branch), ("actor", r.actor),
        ("started", _when(r.started_at)), ("ended", _when(r.ended_at)),
        ("duration", _duration(_seconds(r.started_at, r.ended_at))),
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


# ----------------------------------------------------------------------------- lineage


def _lineage(store: Any, args: argparse.Namespace) -> int:
    from cd4ml.reporting.console import print_json
    from cd4ml.reporting.lineage import (
        default_log_paths,
        lineage,
        parse_model_ref,
        prediction_lineage,
    )

    if bool(args.ref) == bool(args.request_id):
        raise Cd4mlError("give a model version (e.g. 'cd4ml lineage wine:3') or "
                         "--request-id ID, not both and not neither")
    if args.request_id:
        logs = args.log or default_log_paths()
        found = prediction_lineage(store, args.request_id, logs, args.pipeline)
        if args.json:
            print_json({"prediction": found.prediction, "sha256_matches": found.sha256_matches,
                        "lineage": _lineage_json(found.lineage)})
        else:
            print(_prediction_text(found))
            print()
            print(_lineage_text(found.lineage))
        return 0
    parsed = parse_model_ref(args.ref)
    if parsed is None:
        raise Cd4mlError(f"{args.ref!r}: lineage starts from a model version, PIPELINE:VERSION "
                         "(e.g. wine:3); see 'cd4ml models'")
    result = lineage(store, *parsed)
    if args.json:
        print_json(_lineage_json(result))
    else:
        print(_lineage_text(result))
    return 0


def _lineage_json(result: Any) -> dict:
    from cd4ml.reporting.console import to_jsonable

    return {**to_jsonable(result), "ref": result.model.ref, "gate": _gate_json(result.gate),
            "environments": list(result.environments)}


def policy_word(details: dict) -> str:
    """A deployment's policy outcome in a word: passed, OVERRIDDEN (by whom), or -."""
    if details.get("override"):
        return f"OVERRIDDEN by {details['override'].get('by')}: {details['override'].get('reason')}"
    checks = details.get("policy") or []
    return "passed" if checks and all(c.get("passed") for c in checks) else "-"


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
    out.append(f"run         {r.id}  {_status(r.status)}  commit {r.git_commit or '-'} on "
               f"{r.branch or '-'} by {r.actor or '-'}")
    out.append(f"            spec {r.spec_hash or '-'}  started {_when(r.started_at)}")
    out.append("  ↓")
    flags = ["blessed" if m.blessed else "not blessed"] + (["BAD"] if m.bad else [])
    out.append(f"model       {m.ref}  {', '.join(flags)}  gate {_gate_word(result.gate)}")
    banner = _override_line(result.gate)
    if banner:
        out.append(f"            {banner}")
    out.append(f"            sha256 {m.sha256}")
    out.append(f"            artifact {m.artifact_uri}")
    out.append("  ↓")
    if result.images:
        out.append("images")
        out.append(_indent(table(["image", "reference", "digest", "infra", "size MB", "built"],
                                 [(_short(i.image_id.removeprefix("sha256:"), 12), i.reference,
                                   i.digest, i.infra_status,
                                   None if i.size_bytes is None else round(i.size_bytes / 1e6, 1),
                                   _when(i.created_at)) for i in result.images])))
    else:
        out.append("images      none built")
    out.append("  ↓")
    if result.deployments:
        out.append("deployments")
        out.append(_indent(table(
            ["environment", "action", "status", "current", "target", "by", "approved by",
             "policy", "started", "url"],
            [(x.environment, x.action, x.status, "CURRENT" if x.current else "", x.target,
              x.actor, ", ".join(approvers_of(x.details or {})) or "-", policy_word(x.details or {}),
              _when(x.started_at), x.url) for x in result.deployments])))
    else:
        out.append("deployments none")
    out.append(f"serving now: {', '.join(result.environments) or 'nowhere'}")
    return "\n".join(out)


def _prediction_text(found: Any) -> str:
    from cd4ml.reporting.console import paint

    p, lin = found.prediction, found.lineage
    output = p.get("output", p.get("predictions"))
    out = [paint(f"prediction {p.get('request_id')}", "bold") + f"  at {p.get('time', '-')}",
           f"  found at   {p.get('log_location')}",
           (f"  model      {lin.model.ref}  (run {lin.run.id}, data {_short(lin.run.data_hash, 12)}, "
            f"commit {_short(lin.run.git_commit)})"),
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


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


# ----------------------------------------------------------------------------- compare


def _compare(store: Any, args: argparse.Namespace) -> int:
    from cd4ml.reporting.console import print_json, table, to_jsonable
    from cd4ml.reporting.lineage import compare

    c = compare(store, args.a, args.b)
    la, lb = _label(c.a), _label(c.b)
    header = ["kind", "name", "slice", "slice_value", la, lb, "delta"]
    rows = [("metric", m.name, m.slice, m.slice_value, m.a, m.b, m.delta) for m in c.metrics]
    rows += [("param", p.name, "", "", p.a, p.b, None) for p in c.params]
    if args.csv:
        _write_csv(args.csv, header, rows)
        if args.csv == "-":
            return 0
    if args.json:
        print_json({"a": {"ref": la, **to_jsonable(c.a)}, "b": {"ref": lb, **to_jsonable(c.b)},
                    "metrics": [{**to_jsonable(m), "delta": m.delta} for m in c.metrics],
                    "params": to_jsonable(c.params),
                    "changed_params": [p.name for p in c.changed_params],
                    "differences": [{"what": w, "a": a, "b": b} for w, a, b in c.facts]})
        return 0
    out = [f"A: {la} (run {c.a.source.id})   B: {lb} (run {c.b.source.id})   delta = B - A"]
    out += [f"  {what:<16} {_fact(what, a)} -> {_fact(what, b)}" for what, a, b in c.facts]
    if c.metrics:
        out += ["", table(["metric", "rows", la, lb, "delta"],
                          [(m.name, f"{m.slice}={m.slice_value}" if m.slice else "all", m.a, m.b,
                            "-" if m.delta is None else f"{m.delta:+.4g}") for m in c.metrics])]
    else:
        out.append("no metrics recorded for either")
    changed = c.changed_params
    if changed:
        out += ["", table(["param", la, lb], [(p.name, p.a, p.b) for p in changed])]
    else:
        out.append("params: the same")
    print("\n".join(out))
    return 0


def _fact(what: str, value: str | None) -> str:
    # hashes are told apart by their first 12 characters; a branch name is shown whole
    return (value if what == "branch" else _short(value, 12)) or "-"


def _label(r: Any) -> str:
    return r.model.ref if r.model else r.source.id


def _write_csv(target: str, header: list[str], rows: list[tuple]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])
    if target == "-":
        sys.stdout.write(buf.getvalue())
        return
    try:
        Path(target).write_text(buf.getvalue(), encoding="utf-8")
    except OSError as e:
        raise Cd4mlError(f"cannot write {target}: {e.strerror}; choose another --csv path") from None


def _cell(v: Any) -> Any:
    import json

    return json.dumps(v, default=str) if isinstance(v, (dict, list)) else v
