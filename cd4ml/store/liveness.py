"""Whether the process running a run is still there.

A run records its holder (host, pid and the process's start time, so a recycled pid is not
taken for the original) and a heartbeat it refreshes while it works. A run left ``running`` by a
process that was killed (kill -9, a cancelled CI job) is *abandoned*: on this host as soon as its
process is gone, elsewhere once its heartbeat is older than :data:`STALE_AFTER` seconds. The
store's locks (``Store.lock``: a deploy's) record and refresh theirs the same way, so the lock
of a killed deploy is taken over at once.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cd4ml.states import RunStatus

if TYPE_CHECKING:
    from cd4ml.store import Run, Store

#: how often a working run refreshes its heartbeat, and when another host gives up on it
BEAT_EVERY = 30.0
STALE_AFTER = 300.0


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            # the command name (field 2) may hold spaces and parentheses: split after its end
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def holder() -> str:
    """This process, as a run records it: ``host:pid:start``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def _alive_here(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return start == "?" or _start_ticks(pid) == start


def process_gone(owner: str | None, heartbeat: str | None, now: datetime | None = None) -> bool:
    """Whether the process ``owner`` (``host:pid:start``, as :func:`holder` names it) is gone:
    on this host as soon as its pid is dead or reused by another process, elsewhere once its
    ``heartbeat`` (ISO time) is older than :data:`STALE_AFTER`. An unknown owner is not gone."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not _alive_here(int(pid), start)
    try:
        last = datetime.fromisoformat(heartbeat or "")
    except ValueError:
        return False
    return ((now or datetime.now(UTC)) - last).total_seconds() > STALE_AFTER


def is_abandoned(run: Run, now: datetime | None = None) -> bool:
    """Whether ``run`` says ``running`` but nothing is running it any more."""
    if run.status is not RunStatus.RUNNING:
        return False
    return process_gone(run.holder, run.heartbeat_at or run.started_at, now)


def shown_status(run: Run) -> RunStatus:
    """The status to show: ``abandoned`` for a run whose process is gone, before anyone has
    marked it so."""
    return RunStatus.ABANDONED if is_abandoned(run) else run.status


class Pulse:
    """Call ``beat`` every ``every`` seconds (default :data:`BEAT_EVERY`) in a background
    thread while the ``with`` block works (or from :meth:`start` to :meth:`stop`); a missed
    beat is logged, never raised."""

    def __init__(self, beat: Callable[[], object], name: str, every: float | None = None):
        self.beat, self.every = beat, BEAT_EVERY if every is None else every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> Pulse:  # noqa: PYI034 -- final in practice; Self needs 3.11 typing
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _beat(self) -> None:
        import logging

        while not self._stop.wait(self.every):
            try:
                self.beat()
            except Exception as e:  # noqa: BLE001 -- a missed beat must not fail the work
                logging.getLogger(__name__).debug("%s: %s", self._thread.name, e)


class Heartbeat(Pulse):
    """Refresh a run's heartbeat in the background while the ``with`` block works."""

    def __init__(self, store: Store, run_id: str, every: float | None = None):
        super().__init__(functools.partial(store.beat, run_id), f"cd4ml-heartbeat-{run_id}", every)
        self.store, self.run_id = store, run_id
