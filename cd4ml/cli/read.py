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
from cd4ml.reporting.api import seconds_between as _seconds


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


# ----------------------------------------------------------------------------- runs, models


def _runs(store: Any, args: argparse.Namespace) -> int:
    from cd4ml.reporting.api import run_rows
    from cd4ml.reporting.console import print_json, table

    rows = run_rows(store, _pipeline_name(args.pipeline), limit=args.limit)
    if args.json:
        print_json([row.json() for row in rows])
        return 0
    if not rows:
        print("no runs recorded" + (f" for {args.pipeline}" if args.pipeline else ""))
        return 0
    print(table(["run", "pipeline", "status", "model", "commit", "branch", "actor", "started",
                 "duration", "cached from"],
                [(r.id, r.pipeline, _status(r.status), m.version if m else None,
                  _short(r.git_commit), r.branch, r.actor, _when(r.started_at),
                  _duration(_seconds(r.started_at, r.ended_at)), r.reused_from)
                 for r, m in ((row.run, row.model) for row in rows)]))
    return 0


def _models(store: Any, args: argparse.Namespace) -> int:
    from cd4ml.reporting.api import models_json
    from cd4ml.reporting.console import print_json, table

    pipeline = _pipeline_name(args.pipeline)
    models = models_json(store, pipeline, limit=args.limit)
    if args.json:
        print_json(models)
        return 0
    if not models:
        print("no model versions recorded" + (f" for {args.pipeline}" if args.pipeline else ""))
        return 0
    rows = []
    for m in models:
        gate = m["gate"]
        blessed = "yes" if m["blessed"] else "no"
        if gate is not None and gate["overridden"]:
            blessed += f" (OVERRIDDEN by {gate['override_by']})"
        rows.append((m["ref"], m["run_id"], blessed, "BAD" if m["bad"] else "",
                     _short(m["sha256"], 12), _when(m["created_at"]),
                     ", ".join(m["deployed"]) or "-"))
    print(table(["model", "run", "blessed", "bad", "sha256", "created", "deployed now"], rows))
    return 0


# ----------------------------------------------------------------------------- show


def _show(store: Any, args: argparse.Namespace) -> int:
    from cd4ml.reporting.api import deployed_now, show_json
    from cd4ml.reporting.console import print_json
    from cd4ml.reporting.lineage import resolve
    from cd4ml.reporting.summary import summarize

    if args.json:
        print_json(show_json(store, args.ref))
        return 0
    target = resolve(store, args.ref)
    summary = summarize(store, target.run.id)
    model = target.model or summary.model
    source = summary.source
    dataset = store.dataset(source.data_hash) if source.data_hash else None
    deployed = deployed_now(store).get(model.id, []) if model else []
    monitored = list(reversed(store.monitorings(model_version_id=model.id, limit=20))) if model else []
    print(_show_text(summary, model, dataset, deployed))
    if monitored:
        print("\n".join(monitoring_lines(monitored)[1:]))
    return 0


def _show_text(summary: Any, model: Any, dataset: Any, deployed: list[str]) -> str:
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
        out.append(f"  artifact {model.artifact_uri}")
        out.append(f"  deployed now: {', '.join(deployed) or '-'}")
    else:
        out.append("model: none")
    out += validation_lines(summary) + metric_lines(summary) + gate_lines(summary)
    return "\n".join(out)


# ----------------------------------------------------------------------------- lineage


def _lineage(store: Any, args: argparse.Namespace) -> int:
    from cd4ml.reporting.api import lineage_json, prediction_json
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
            print_json(prediction_json(found))
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
        print_json(lineage_json(result))
    else:
        print(_lineage_text(result))
    return 0


def _lineage_text(result: Any) -> str:
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
            ["environment", "action", "status", "current", "target", "by", "started", "url"],
            [(x.environment, x.action, x.status, "CURRENT" if x.current else "", x.target,
              x.actor, _when(x.started_at), x.url) for x in result.deployments])))
    else:
        out.append("deployments none")
    out.append(f"serving now: {', '.join(result.environments) or 'nowhere'}")
    out += monitoring_lines(result.monitorings)
    return "\n".join(out)


def monitoring_lines(found: Any) -> list[str]:
    """The recorded monitoring results of a version (``cd4ml monitor``), one row each."""
    from cd4ml.reporting.console import paint, table

    if not found:
        return []
    def breaches(m: Any) -> str:
        said = m.findings.get("breaches") or []
        if not said:
            return "-"
        first = said[0] if len(said[0]) <= 60 else said[0][:59] + "…"
        return first + (f" (+{len(said) - 1} more)" if len(said) > 1 else "")

    rows = [(m.environment, f"{_when(m.window_from)} .. {_when(m.window_to)}", m.rows,
             paint("BREACH", "red") if m.breached else "ok", breaches(m)) for m in found]
    return ["  ↓", "monitoring", _indent(table(["environment", "window", "rows", "status",
                                                "breaches"], rows))]


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
    from cd4ml.reporting.api import compare_json, label
    from cd4ml.reporting.console import print_json, table
    from cd4ml.reporting.lineage import compare

    c = compare(store, args.a, args.b)
    la, lb = label(c.a), label(c.b)
    header = ["kind", "name", "slice", "slice_value", la, lb, "delta"]
    rows = [("metric", m.name, m.slice, m.slice_value, m.a, m.b, m.delta) for m in c.metrics]
    rows += [("param", p.name, "", "", p.a, p.b, None) for p in c.params]
    if args.csv:
        _write_csv(args.csv, header, rows)
        if args.csv == "-":
            return 0
    if args.json:
        print_json(compare_json(c))
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
