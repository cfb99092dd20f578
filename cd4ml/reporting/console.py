"""Rendering for the terminal: tables, colour only on a TTY (and never with NO_COLOR), and the
progress listener that turns stage events into one line per stage."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import fields, is_dataclass
from typing import Any, TextIO

from cd4ml.events import (
    Event,
    StageFailed,
    StageFinished,
    StageProgress,
    StageSkipped,
    StageStarted,
    StageWarning,
    TakenDown,
)

_CODES = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}
#: how a stage's end is marked: (symbol, colour)
_ENDS: dict[type[Event], tuple[str, str]] = {
    StageFinished: ("✓", "green"), StageFailed: ("✗", "red"), StageSkipped: ("↷", "yellow"),
    TakenDown: ("↓", "yellow")}


# Streams default to None and are looked up at call time: a default of sys.stdout would be the
# stream at import, which pytest's capture (or any redirect) has replaced and maybe closed since.
def use_colour(stream: TextIO | None = None) -> bool:
    stream = sys.stdout if stream is None else stream
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def paint(text: str, colour: str, stream: TextIO | None = None) -> str:
    return f"\033[{_CODES[colour]}m{text}\033[0m" if use_colour(stream) else text


def fmt(v: Any) -> str:
    """A value for a table: numbers to 4 significant digits, NaN and None spelt out."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(list(headers)), line(["-" * w for w in widths])] + [line(r) for r in cells])


def to_jsonable(obj: Any) -> Any:
    # the common leaves first: the web view turns tens of thousands of records at a time
    if obj is None or isinstance(obj, (str, int)):
        return obj
    if is_dataclass(obj) and not isinstance(obj, type):
        # field by field rather than asdict(), which deep-copies everything first
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if hasattr(obj, "__fspath__"):
        return os.fspath(obj)
    return obj


def print_json(obj: Any, stream: TextIO | None = None) -> None:
    stream = sys.stdout if stream is None else stream
    stream.write(json.dumps(to_jsonable(obj), indent=2, sort_keys=True, default=str) + "\n")


class Progress:
    """Listener: one line per stage on stderr, so stdout stays clean for --json."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = sys.stderr if stream is None else stream
        self.started: dict[str, float] = {}

    def __call__(self, e: Event) -> None:
        end = _ENDS.get(type(e))
        if isinstance(e, StageStarted) and e.stage:
            self.started[e.stage] = time.perf_counter()
            if use_colour(self.stream):
                self.stream.write(paint(f"… {e.stage}", "dim", self.stream) + "\r")
        elif end is not None and e.stage:
            began = self.started.pop(e.stage, None)
            took = f"  ({time.perf_counter() - began:.2f}s)" if began is not None else ""
            self.stream.write(f"{paint(end[0], end[1], self.stream)} {e.stage:<9} "
                              f"{e.message}{took}\n")
        elif isinstance(e, StageWarning):
            self.stream.write(paint(f"warning: {e.message}", "yellow", self.stream) + "\n")
        elif isinstance(e, StageProgress) and e.message:
            self.stream.write(f"  {e.message}\n")
        self.stream.flush()
