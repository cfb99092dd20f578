"""How the read commands (runs, models, show, lineage, compare) show store records: times,
durations, statuses, gate verdicts, where a version serves now."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cd4ml.states import RunStatus


def _time(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def when(stamp: str | None) -> str | None:
    t = _time(stamp)
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else stamp



def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def short(value: str | None, n: int = 8) -> str | None:
    return value[:n] if value else value


def gate_word(gate: Any) -> str:
    """A gate verdict in a few words; an override is never hidden."""
    if gate is None:
        return "not gated"
    if gate.overridden:
        return f"OVERRIDDEN by {gate.override_by}"
    return "passed" if gate.passed else "failed"


def override_line(gate: Any) -> str | None:
    from cd4ml.reporting.console import paint

    if gate is None or not gate.overridden:
        return None
    return paint(f"gate OVERRIDDEN by {gate.override_by}: {gate.override_reason}", "yellow")


def status(status: RunStatus) -> str:
    from cd4ml.reporting.console import paint

    colour = ("red" if status.failed or status is RunStatus.ABANDONED
              else "green" if status is RunStatus.SUCCEEDED
              else "yellow" if status is RunStatus.RUNNING else None)
    return paint(status, colour) if colour else status



def indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
