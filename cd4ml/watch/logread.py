"""The prediction log, read back as a stream: one line at a time, never the whole file.

A log is what the servers wrote (see :mod:`cd4ml.serve.predlog`): one JSON object per line,
``{"time", "request_id", "pipeline", "model_version", "model_sha256", "inputs",
"predictions", "probabilities"}``, or with ``"refused": {"status", "error"}`` for a request the
server turned away. What else a log may hold is skipped and counted, never fatal: the other
output of a container (``kubectl logs`` mixes them), lines of another pipeline, a last line cut
short by a crash or still being written. The counts and a few ``file:line`` examples of each
go into the finding, so a log that is mostly garbage shows.

The window test reads the stamp at its fixed place before any parsing: most of a long log is
outside the window. orjson parses the rest (4x the standard library's speed, which is what
keeps a million lines within seconds).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from cd4ml.errors import DataError
from cd4ml.watch.window import Window

#: examples kept per kind of skipped line
EXAMPLES = 3
_HEAD = b'{"time":"'
_STAMP = slice(len(_HEAD), len(_HEAD) + 27)  # 2026-12-03T10:14:00.123456Z


@dataclass
class LogCounts:
    """What a read met, line by line (filled in as the stream is consumed)."""

    lines: int = 0
    predictions: int = 0  # prediction records in the window, of the pipeline
    refused: int = 0  # refused-request records in the window, of the pipeline
    outside_window: int = 0
    other_pipeline: int = 0
    not_json: int = 0
    not_prediction: int = 0  # JSON, but not a prediction log record
    truncated: int = 0  # a last line cut short
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, kind: str, where: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        seen = self.examples.setdefault(kind, [])
        if len(seen) < EXAMPLES:
            seen.append(where)

    def merge(self, other: LogCounts) -> None:
        """Add the counts of another part of the same read."""
        for key in ("lines", "predictions", "refused", "outside_window", "other_pipeline",
                    "not_json", "not_prediction", "truncated"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        for kind, seen in other.examples.items():
            mine = self.examples.setdefault(kind, [])
            mine += seen[:EXAMPLES - len(mine)]

    def as_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "predictions": self.predictions, "refused": self.refused,
                "outside_window": self.outside_window, "other_pipeline": self.other_pipeline,
                "not_json": self.not_json, "not_prediction": self.not_prediction,
                "truncated": self.truncated, "examples": self.examples}


#: a part of a log: (path, first byte, end byte or None for the end of the file)
Part = tuple[str, int, int | None]


def split(paths: Iterable[str | Path], n: int) -> list[list[Part]]:
    """The logs cut into at most ``n`` runs of about equal bytes, at any byte: a line belongs
    to the part it starts in (see :func:`records_in`). Standard input is never cut."""
    names = [str(p) for p in paths]
    files = [(p, os.path.getsize(p)) for p in names if p != "-"]
    total = sum(size for _, size in files)
    share = max(1, -(-total // max(1, n)))
    out: list[list[Part]] = [[] for _ in range(max(1, n))]
    base = 0
    for path, size in files:
        cuts = sorted({0, size} | {c - base for c in range(share, total, share)
                                   if base < c < base + size})
        if size == 0:
            out[min(base // share, n - 1)].append((path, 0, None))
        for a, b in itertools.pairwise(cuts):
            out[min((base + a) // share, n - 1)].append((path, a, None if b == size else b))
        base += size
    if "-" in names:
        out[0].append(("-", 0, None))
    return [part for part in out if part]


def records(paths: Iterable[str | Path], pipeline: str, window: Window,
            counts: LogCounts) -> Iterator[dict[str, Any]]:
    """The pipeline's prediction and refusal records in ``window``, from every path in turn
    (``-`` is standard input); everything else is counted in ``counts``."""
    return records_in([(str(p), 0, None) for p in paths], pipeline, window, counts)


def records_in(parts: Iterable[Part], pipeline: str, window: Window,
               counts: LogCounts) -> Iterator[dict[str, Any]]:
    """:func:`records` of parts of logs. A part that starts inside a file skips to the first
    line that starts in it and reads up to the first line that starts at or after its end;
    its examples are named ``file@byte`` rather than ``file:line``."""
    start, end = window.start.encode(), window.end.encode()
    lo, hi = window.start, window.end
    loads, error = orjson.loads, orjson.JSONDecodeError
    for path, first, stop in parts:
        with _open(path) as f:
            position = _seek(f, first)
            track = stop is not None or first != 0  # byte positions: only for cut files
            name = path if first == 0 else f"{path}@"
            number = predictions = 0
            for line in f:
                number += 1
                where = position
                if track:
                    if stop is not None and position >= stop:
                        number -= 1
                        break
                    position += len(line)
                # the stamp at its fixed place: most of a long log is outside the window
                if line.startswith(_HEAD) and line[_STAMP.stop:_STAMP.stop + 1] == b'"':
                    stamp = line[_STAMP]
                    if stamp < start or stamp > end:
                        counts.outside_window += 1
                        continue
                try:
                    record = loads(line)
                except error:
                    if line.strip():
                        cut = not line.endswith(b"\n") and line.startswith(b"{")
                        counts.skip("truncated" if cut else "not_json",
                                    _where(name, number, where))
                    continue
                # a well-formed prediction in one test (this loop runs a million times)
                try:
                    if record["pipeline"] == pipeline and lo <= record["time"] <= hi \
                            and type(record["model_version"]) is int \
                            and type(record["inputs"]) is list \
                            and len(record["inputs"]) == len(record["predictions"]) \
                            and type(record["predictions"]) is list:
                        predictions += 1
                        yield record
                        continue
                except (KeyError, TypeError):
                    pass
                kind = _kind(record, pipeline, lo, hi)
                if kind == "refused":
                    counts.refused += 1
                    yield record
                elif kind == "outside_window":
                    counts.outside_window += 1
                else:
                    counts.skip(kind, _where(name, number, where))
            counts.lines += number
            counts.predictions += predictions


def _kind(record: Any, pipeline: str, lo: str, hi: str) -> str:
    """What a record that is not a well-formed prediction of the window is."""
    if type(record) is not dict or type(record.get("time")) is not str \
            or type(record.get("model_version")) is not int:
        return "not_prediction"
    if record.get("pipeline") != pipeline:
        return "other_pipeline"
    if not lo <= record["time"] <= hi:
        return "outside_window"
    if type(record.get("refused")) is dict:
        return "refused"
    return "not_prediction"


def _where(name: str, number: int, offset: int) -> str:
    return f"{name}{offset}" if name.endswith("@") else f"{name}:{number}"


def _seek(f: BinaryIO, first: int) -> int:
    """Go to the first line that starts at or after byte ``first``; its position."""
    if first == 0:
        return 0
    f.seek(first - 1)
    return first - 1 + len(f.readline())


class _Stdin:
    def __enter__(self) -> BinaryIO:
        return sys.stdin.buffer

    def __exit__(self, *exc: object) -> None:
        pass


def _open(path: str) -> Any:
    if path == "-":
        return _Stdin()
    try:
        return open(path, "rb", buffering=1 << 20)
    except OSError as e:
        raise DataError(f"cannot read prediction log {path}: {e.strerror}; pass an existing "
                        "file with --log") from None
