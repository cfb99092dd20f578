"""The prediction log: one JSON line per answered ``POST /predict``, never in the request's way.

A request only appends a tuple to an unbounded queue; a writer thread turns what has queued up
into JSON lines and writes them in one go. Worker processes of one server share a lock around
that write, so their lines never interleave, whether the log is a file or a pipe (a pipe write
over ``PIPE_BUF`` bytes is not atomic). ``close`` drains the queue before returning, so a clean
shutdown (SIGTERM included) loses nothing that was answered.

Each line: ``{"time", "request_id", "pipeline", "model_version", "model_sha256", "inputs":
[{feature: value}...], "predictions": [...], "probabilities": [{class: p}...] | null}``; a
``POST /predict`` the server refused (a body or row it could not take) is a line with
``"refused": {"status", "error"}`` instead of inputs and predictions, so that monitoring can
tell the rate of refused requests over any window.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import threading
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

_STOP = object()


class PredictionLog:
    """Queue + writer thread over a file (appended to) or standard output."""

    def __init__(self, path: str | None, model: dict[str, Any],
                 lock: AbstractContextManager[Any] | None = None):
        if path:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._own = True
        else:
            sys.stdout.flush()
            self._fd = sys.stdout.fileno()
            self._own = False
        self.target = path or "stdout"
        self._lock = lock if lock is not None else contextlib.nullcontext()
        self._model = model
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.written = 0
        self.failed = 0
        self._error_reported = False
        self._thread = threading.Thread(target=self._run, name="cd4ml-prediction-log", daemon=True)
        self._thread.start()

    def record(self, when: float, request_id: str, names: list[str], rows: list[list[Any]],
               predictions: list, probabilities: list | None) -> None:
        """Queue one line; returns at once (the queue is unbounded, so nothing is dropped)."""
        self._queue.put((when, request_id, names, rows, predictions, probabilities))

    def refuse(self, when: float, request_id: str, status: int, error: str) -> None:
        """Queue the line of a refused request (its body is not kept: it could not be read)."""
        self._queue.put((when, request_id, status, error))

    def close(self) -> None:
        """Write out everything queued, then stop the writer (and close a file we opened)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if self._own:
            os.close(self._fd)
            self._own = False

    # ----------------------------------------------------------------------------- the writer

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            batch = [item]
            # take what else has queued up, so a burst becomes one write
            while item is not _STOP and len(batch) < 1000:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            stop = batch[-1] is _STOP
            if stop:
                batch.pop()
            if batch:
                self._write(b"".join(self._line(*entry) if len(entry) == 6 else
                                     self._refused(*entry) for entry in batch), len(batch))
            if stop:
                return

    def _line(self, when: float, request_id: str, names: list[str], rows: list[list[Any]],
              predictions: list, probabilities: list | None) -> bytes:
        entry = {"time": _stamp(when), "request_id": request_id, **self._model,
                 "inputs": [dict(zip(names, r)) for r in rows], "predictions": predictions,
                 "probabilities": probabilities}
        return json.dumps(entry, separators=(",", ":"), default=str).encode() + b"\n"

    def _refused(self, when: float, request_id: str, status: int, error: str) -> bytes:
        entry = {"time": _stamp(when), "request_id": request_id, **self._model,
                 "refused": {"status": status, "error": error[:500]}}
        return json.dumps(entry, separators=(",", ":"), default=str).encode() + b"\n"

    def _write(self, data: bytes, count: int) -> None:
        view = memoryview(data)
        try:
            with self._lock:
                while view:
                    view = view[os.write(self._fd, view):]
            self.written += count
        except OSError as e:
            self.failed += count
            if not self._error_reported:
                self._error_reported = True
                print(f"cd4ml.serve: error: cannot write the prediction log to {self.target}: "
                      f"{e.strerror}; predictions are still answered", file=sys.stderr, flush=True)


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
