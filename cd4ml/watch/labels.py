"""Ground truth that arrives after the prediction: checked as a whole, joined to the logged
predictions by request id, recorded once.

A label file is CSV (with a header) or JSON lines, one label per row: ``request_id``,
``label``, optionally ``row`` (which row of a multi-row request, 0 by default), ``time`` (when
the truth became known, ISO 8601) and any of the spec's slice columns. The file is validated
as a whole before anything is written: unknown request ids, labels of the wrong type (not one
of the model's classes; not a number for a regressor), rows given twice, labels contradicting
one recorded earlier and unreadable rows are each reported in one line with a count and a few
examples, and a file with any of them records nothing (``skip_invalid`` records the valid rows
and reports the rest). Adding a file again records nothing twice: a label already recorded
with the same value counts as ``already``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import DataError
from cd4ml.watch.logread import LogCounts, records
from cd4ml.watch.window import Window

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.store import Store

#: examples shown per kind of problem
EXAMPLES = 3
PROBLEMS = {
    "unreadable": "rows that cannot be read",
    "missing": "rows without a request_id or label",
    "unknown": "unknown request ids (no logged prediction of this pipeline)",
    "wrong_type": "labels of the wrong type",
    "bad_time": "times that are not ISO 8601",
    "duplicate": "request ids given more than once",
    "conflict": "labels contradicting one recorded before",
}
_EVERYTHING = Window("0000", "9999")


@dataclass(frozen=True)
class LabelsConfig:
    """A label file, and the logs to find its predictions in (besides the host logs)."""

    file: Path
    logs: tuple[str, ...] = ()
    skip_invalid: bool = False


@dataclass(frozen=True)
class Problem:
    kind: str  # a key of PROBLEMS
    count: int
    examples: tuple[str, ...]

    @property
    def line(self) -> str:
        return f"{self.count} {PROBLEMS[self.kind]}, e.g. {'; '.join(self.examples)}"


@dataclass(frozen=True)
class LabelsResult:
    file: str
    sha256: str
    rows: int  # label rows read
    added: int  # newly recorded
    already: int  # recorded before with the same label
    recorded: bool  # False: the file failed validation and nothing was written
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def refused(self) -> int:
        return sum(p.count for p in self.problems)


@dataclass
class _Problems:
    found: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        seen = self.found.setdefault(kind, [])
        if len(seen) < EXAMPLES:
            seen.append(example)

    def frozen(self) -> tuple[Problem, ...]:
        return tuple(Problem(k, self.counts[k], tuple(self.found[k])) for k in PROBLEMS
                     if k in self.counts)


def add_labels(spec: Spec, store: Store, config: LabelsConfig) -> LabelsResult:
    """Validate ``config.file`` against the logged predictions and record its labels."""
    data = _read(config.file)
    sha = hashlib.sha256(data).hexdigest()
    problems = _Problems()
    rows = _parse(config.file, data, problems)
    if not rows and not problems.counts:
        raise DataError(f"{config.file}: no labels in it, only a header; add rows of "
                        "request_id,label")
    wanted = {r["request_id"] for r in rows}
    logged = _logged(spec, wanted, config.logs)
    recorded = store.recorded_labels(spec.name, wanted)
    fresh, already, seen = [], 0, set()
    classes = _classes(store, spec.name, logged)
    for r in rows:
        where = r["where"]
        key = (r["request_id"], r["row"])
        if key in seen:
            problems.add("duplicate", f"{where} {r['request_id']}")
            continue
        seen.add(key)
        found = logged.get(r["request_id"])
        if found is None or r["row"] >= found[2]:
            problems.add("unknown", f"{where} {r['request_id']}")
            continue
        label = _typed(spec.model.task, r["label"], classes.get(found[0]))
        if label is _WRONG:
            problems.add("wrong_type", f"{where} {r['label']!r}")
            continue
        if key in recorded:
            if recorded[key] == label:
                already += 1
            else:
                problems.add("conflict", f"{where} {r['request_id']}: {label!r} vs recorded "
                             f"{recorded[key]!r}")
            continue
        fresh.append({"pipeline": spec.name, "request_id": r["request_id"], "row_index": r["row"],
                      "label": label, "slices": {c: r["slices"][c] for c in r["slices"]},
                      "label_time": r["time"], "prediction_time": found[1],
                      "model_version": found[0], "source": sha})
    frozen = problems.frozen()
    write = not frozen or config.skip_invalid
    added = store.record_labels(fresh) if write and fresh else 0
    return LabelsResult(str(config.file), sha, len(rows) + problems.counts.get("unreadable", 0)
                        + problems.counts.get("missing", 0) + problems.counts.get("bad_time", 0),
                        added, already, write, frozen)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the label file: {e.strerror}; check the path") from None


def _parse(path: Path, data: bytes, problems: _Problems) -> list[dict[str, Any]]:
    """Label rows with ``where`` (``file:line``); a file in no known shape raises."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; export the labels as CSV or JSON lines") from None
    head = text.lstrip()[:1]
    if not head:
        raise DataError(f"{path}: the file is empty; expected CSV with a header "
                        "(request_id,label[,row,time,...]) or JSON lines")
    if head == "{":
        raw = _json_lines(path, text, problems)
    else:
        raw = _csv(path, text)
    out = []
    for where, item in raw:
        rid, label = item.get("request_id"), item.get("label")
        if rid in (None, "") or label in (None, ""):
            problems.add("missing", where)
            continue
        row = item.get("row") or 0
        try:
            row = int(row)
            if row < 0:
                raise ValueError
        except (TypeError, ValueError):
            problems.add("unreadable", f"{where} row {row!r}")
            continue
        when = item.get("time") or None
        if when is not None:
            try:
                from cd4ml.watch.window import parse_time, stamp

                when = stamp(parse_time(str(when), "time"))
            except Exception:  # noqa: BLE001 - any unreadable time is one kind of problem
                problems.add("bad_time", f"{where} {when!r}")
                continue
        extra = {k: v for k, v in item.items() if k not in ("request_id", "label", "row", "time")}
        out.append({"where": where, "request_id": str(rid), "label": label, "row": row,
                    "time": when, "slices": extra})
    return out


def _json_lines(path: Path, text: str, problems: _Problems) -> list[tuple[str, dict]]:
    out = []
    for number, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            problems.add("unreadable", f"{path.name}:{number}")
            continue
        if not isinstance(item, dict):
            problems.add("unreadable", f"{path.name}:{number}")
            continue
        out.append((f"{path.name}:{number}", item))
    return out


def _csv(path: Path, text: str) -> list[tuple[str, dict]]:
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    lacking = [c for c in ("request_id", "label") if c not in columns]
    if lacking:
        raise DataError(f"{path}: no {' or '.join(lacking)} column (columns: "
                        f"{', '.join(columns[:8]) or 'none'}); the header must name request_id "
                        "and label (optional: row, time, slice columns), or use JSON lines")
    try:
        return [(f"{path.name}:{reader.line_num}", dict(item)) for item in reader]
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV: {e}; fix the file") from None


def _logged(spec: Spec, wanted: set[str], extra: tuple[str, ...]) -> dict[str, tuple[int, str, int]]:
    """request id -> (model version, time, rows) of the logged predictions among ``wanted``."""
    from cd4ml.paths import prediction_log_dir

    paths = [str(p) for env in spec.environments
             for p in sorted(prediction_log_dir(spec.project, spec.name, env.name).glob("*.jsonl"))]
    paths += list(extra)
    out: dict[str, tuple[int, str, int]] = {}
    for record in records(paths, spec.name, _EVERYTHING, LogCounts()):
        rid = record.get("request_id")
        if rid in wanted and "refused" not in record:
            out[rid] = (record["model_version"], record["time"], len(record["predictions"]))
    return out


def _classes(store: Store, pipeline: str, logged: dict[str, tuple[int, str, int]]) -> dict[int, list]:
    from cd4ml.errors import StoreError

    out: dict[int, list] = {}
    for version in {v for v, _, _ in logged.values()}:
        try:
            out[version] = list(store.model(pipeline, version).signature.get("classes") or [])
        except StoreError:
            out[version] = []
    return out


_WRONG = object()


def _typed(task: str, value: Any, classes: list | None) -> Any:
    """The label as the model's own type, or ``_WRONG``."""
    if task == "regression":
        if isinstance(value, bool):
            return _WRONG
        try:
            number = float(value)
        except (TypeError, ValueError):
            return _WRONG
        return number if math.isfinite(number) else _WRONG
    if not classes:
        return value
    from cd4ml.serve.schema import label_key

    key = label_key(value) if not isinstance(value, str) else value
    for c in classes:
        if c == value and type(c) is type(value) or label_key(c) == key:
            return c
    return _WRONG
