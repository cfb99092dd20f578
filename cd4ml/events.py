"""Stage events. The library never prints: stages emit events, and reporters (the console,
GitHub, the step summary) listen, so every view shows the same facts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Listener = Callable[["Event"], None]
_listeners: list[Listener] = []


@dataclass(frozen=True)
class Event:
    """``kind`` is e.g. stage_started, stage_finished, stage_skipped, expectation_failed,
    gate_result, image_built, deployed, warning, progress."""

    kind: str
    stage: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def emit(kind: str, stage: str | None = None, message: str = "", **data: Any) -> None:
    event = Event(kind, stage, message, data)
    # a copy: a listener may leave (end its ``listening`` block) while it is being told
    for listener in list(_listeners):  # noqa: PERF101
        listener(event)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
