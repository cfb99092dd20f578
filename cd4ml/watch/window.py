"""The time window a monitoring reads: ``--since 24h`` or ``--from T --to T``.

Times are kept as the prediction log writes them (``2026-12-03T10:14:00.123456Z``): ISO 8601 in
UTC with a fixed width sorts as text, so the log reader compares a line's stamp without
parsing it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cd4ml.errors import SpecError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
#: the default look-back of ``cd4ml monitor``
DEFAULT_SINCE = "24h"


@dataclass(frozen=True)
class Window:
    """``[start, end]``, both in the prediction log's time format."""

    start: str
    end: str

    def holds(self, stamp: str) -> bool:
        return self.start <= stamp <= self.end


def stamp(moment: datetime) -> str:
    """A time in the prediction log's format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d``, ``2w``."""
    m = _DURATION.match(text.strip())
    if not m:
        raise SpecError(f"--since {text!r}: expected a number and a unit (s, m, h, d, w), "
                        "e.g. 24h or 30m")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def parse_time(text: str, option: str) -> datetime:
    """ISO 8601 (a date, or a date and time; UTC unless it says otherwise)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SpecError(f"{option} {text!r}: expected an ISO 8601 time, e.g. "
                        "2026-12-01T08:00:00Z or 2026-12-01") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def window(since: str | None = None, start: str | None = None, end: str | None = None,
           now: datetime | None = None) -> Window:
    """The window the options describe; ``--since`` and ``--from/--to`` exclude each other."""
    if since and (start or end):
        raise SpecError("--since and --from/--to exclude each other; give one of them")
    now = now or datetime.now(UTC)
    if start or end:
        lo = parse_time(start, "--from") if start else datetime(1970, 1, 1, tzinfo=UTC)
        hi = parse_time(end, "--to") if end else now
        if lo > hi:
            raise SpecError(f"--from {start} is after --to {end}; swap them")
        return Window(stamp(lo), stamp(hi))
    return Window(stamp(now - parse_duration(since or DEFAULT_SINCE)), stamp(now))
