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

    def as_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "predictions": self.predictions, "refused": self.refused,
                "outside_window": self.outside_window, "other_pipeline": self.other_pipeline,
                "not_json": self.not_json, "not_prediction": self.not_prediction,
                "truncated": self.truncated, "examples": self.examples}


def records(paths: Iterable[str | Path], pipeline: str, window: Window,
            counts: LogCounts) -> Iterator[dict[str, Any]]:
    """The pipeline's prediction and refusal records in ``window``, from every path in turn
    (``-`` is standard input); everything else is counted in ``counts``."""
    start, end = window.start.encode(), window.end.encode()
    lo, hi = window.start, window.end
    loads, error = orjson.loads, orjson.JSONDecodeError
    for path in paths:
        name = str(path)
        with _open(name) as f:
            number = 0
            for line in f:
                number += 1
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
                        counts.skip("truncated" if cut else "not_json", f"{name}:{number}")
                    continue
                # the checks of a well-formed record, inline: this loop runs a million times
                if type(record) is not dict or type(record.get("time")) is not str \
                        or type(record.get("model_version")) is not int:
                    counts.skip("not_prediction", f"{name}:{number}")
                elif record.get("pipeline") != pipeline:
                    counts.skip("other_pipeline", f"{name}:{number}")
                elif not lo <= record["time"] <= hi:
                    counts.outside_window += 1
                elif "refused" in record:
                    if type(record["refused"]) is dict:
                        counts.refused += 1
                        yield record
                    else:
                        counts.skip("not_prediction", f"{name}:{number}")
                else:
                    inputs, predictions = record.get("inputs"), record.get("predictions")
                    if type(inputs) is list and type(predictions) is list \
                            and len(inputs) == len(predictions):
                        counts.predictions += 1
                        yield record
                    else:
                        counts.skip("not_prediction", f"{name}:{number}")
            counts.lines += number


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
