"""The prediction log: one JSON line per answered ``POST /predict``, never in the request's way.

A request only appends a tuple to a queue; a writer thread turns what has queued up into JSON
lines and writes them in one go. The queue is bounded by the rows waiting in it: a request
that would overfill it waits for the writer (back-pressure), so memory stays bounded and no
prediction is ever dropped. Worker processes of one server share a lock around that write, so
their lines never interleave, whether the log is a file or a pipe (a pipe write over
``PIPE_BUF`` bytes is not atomic). ``close`` drains the queue before returning, so a clean
shutdown (SIGTERM included) loses nothing that was answered.

Each line: ``{"time", "request_id", "pipeline", "model_version", "model_sha256", "inputs":
[{feature: value}...], "predictions": [...], "probabilities": [{class: p}...] | null}``; a
``POST /predict`` the server refused (a body or row it could not take) is a line with
``"refused": {"status", "error"}`` instead of inputs and predictions, so that monitoring can
tell the rate of refused requests over any window. Readers (``cd4ml lineage --request-id``, ``cd4ml monitor``) depend on it: add fields, never
rename them.

The inputs are encoded by orjson (:func:`cd4ml.serve.jsontext.records`), a hundred rows
per call, so that the writer gives up the GIL between pieces instead of holding it for a whole
batch inside one C call, which showed in the latency of requests answered meanwhile; the
predictions and probabilities are the very bytes of the answer.

A log file rotates when the next write would take it over ``max_bytes``: it is renamed to
``<name>.<UTC time>.jsonl`` beside it and a new one started; the oldest rotated files beyond
``keep`` are deleted. Standard output is never rotated (the container runtime's log driver
does that).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
from collections import deque
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from cd4ml.serve.jsontext import records, values

_STOP = object()
#: rows waiting to be written before a request waits for the writer
MAX_PENDING_ROWS = 200_000
#: a log file rotates before it would exceed this many bytes ...
MAX_BYTES = 256 << 20
#: ... and this many rotated files are kept beside it
KEEP = 4



@dataclass(frozen=True)
class LogPolicy:
    """How big a log file may grow and how many rotated ones are kept."""

    max_bytes: int = MAX_BYTES
    keep: int = KEEP

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LogPolicy:
        """``CD4ML_PREDICTION_LOG_MAX_MB`` (256) and ``CD4ML_PREDICTION_LOG_KEEP`` (4);
        raises ``ValueError`` naming the variable when one is not a whole number."""
        values = {}
        for name, key, scale, least in (("CD4ML_PREDICTION_LOG_MAX_MB", "max_bytes", 1 << 20, 1),
                                        ("CD4ML_PREDICTION_LOG_KEEP", "keep", 1, 0)):
            text = environ.get(name, "").strip()
            if text:
                if not text.isdigit() or int(text) < least:
                    raise ValueError(f"{name}={text!r} is not a whole number of at least {least}")
                values[key] = int(text) * scale
        return cls(**values)


class PredictionLog:
    """Queue + writer thread over a file (appended to, rotated) or standard output."""

    def __init__(self, path: str | None, model: dict[str, Any],
                 lock: AbstractContextManager[Any] | None = None,
                 max_pending_rows: int = MAX_PENDING_ROWS, max_bytes: int = MAX_BYTES,
                 keep: int = KEEP, policy: LogPolicy | None = None):
        self._path = path or None
        if path:
            self._fd = _open(path)
            self._own = True
        else:
            sys.stdout.flush()
            self._fd = sys.stdout.fileno()
            self._own = False
        self.target = path or "stdout"
        self._lock = lock if lock is not None else contextlib.nullcontext()
        self._model = json.dumps(model, separators=(",", ":"), default=str)[1:-1].encode()
        if policy is not None:
            max_bytes, keep = policy.max_bytes, policy.keep
        self._max_pending, self._max_bytes, self._keep = max_pending_rows, max_bytes, keep
        self._queue: deque = deque()
        self._pending = 0
        self._cv = threading.Condition()
        self.written = 0
        self.failed = 0
        self.rotated = 0
        self._error_reported = False
        self._thread = threading.Thread(target=self._run, name="cd4ml-prediction-log", daemon=True)
        self._thread.start()

    def record(self, when: float, request_id: str, names: list[str], rows: list[list[Any]],
               predictions: list | bytes, probabilities: list | bytes | None) -> None:
        """Queue one line; waits only while the queue holds ``max_pending_rows`` rows already.

        ``predictions`` and ``probabilities`` may come as the JSON text the response carried
        (not encoded twice)."""
        n = len(rows)
        with self._cv:
            # a request larger than the whole budget still goes in, alone
            while self._pending and self._pending + n > self._max_pending:
                self._cv.wait()
            self._queue.append((when, request_id, names, rows, predictions, probabilities))
            self._pending += n
            self._cv.notify_all()

    def refuse(self, when: float, request_id: str, status: int, error: str) -> None:
        """Queue the line of a refused request (its body is not kept: it could not be read)."""
        with self._cv:
            self._queue.append((when, request_id, None, [], status, error))
            self._cv.notify_all()

    def close(self) -> None:
        """Write out everything queued, then stop the writer (and close a file we opened)."""
        if self._thread.is_alive():
            with self._cv:
                self._queue.append(_STOP)
                self._cv.notify_all()
            self._thread.join()
        if self._own:
            os.close(self._fd)
            self._own = False

    # ----------------------------------------------------------------------------- the writer

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                # what has queued up becomes one write; a burst, one system call
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), 1000))]
            stop = batch[-1] is _STOP
            if stop:
                batch.pop()
            if batch:
                data = b"".join(self._line(*entry) if entry[2] is not None
                                else self._refused(*entry) for entry in batch)
                with self._cv:
                    self._pending -= sum(len(entry[3]) for entry in batch)
                    self._cv.notify_all()
                self._write(data, len(batch))
            if stop:
                return

    def _line(self, when: float, request_id: str, names: list[str], rows: list[list[Any]],
              predictions: list | bytes, probabilities: list | bytes | None) -> bytes:
        stamp = datetime.fromtimestamp(when, UTC).isoformat(timespec="microseconds")
        return b"".join((
            b'{"time":"', stamp.replace("+00:00", "Z").encode(), b'","request_id":',
            encode_basestring_ascii(request_id).encode(), b",", self._model, b',"inputs":[',
            records(names, rows), b'],"predictions":',
            predictions if isinstance(predictions, bytes) else values(predictions),
            b',"probabilities":',
            probabilities if isinstance(probabilities, bytes) else values(probabilities),
            b"}\n"))

    def _refused(self, when: float, request_id: str, names: None, rows: list, status: int,
                 error: str) -> bytes:
        stamp = datetime.fromtimestamp(when, UTC).isoformat(timespec="microseconds")
        return b"".join((
            b'{"time":"', stamp.replace("+00:00", "Z").encode(), b'","request_id":',
            encode_basestring_ascii(request_id).encode(), b",", self._model, b',"refused":',
            json.dumps({"status": status, "error": error[:500]}).encode(), b"}\n"))

    def _write(self, data: bytes, count: int) -> None:
        view = memoryview(data)
        try:
            with self._lock:
                if self._path:
                    self._rotate(len(data))
                while view:
                    view = view[os.write(self._fd, view):]
            self.written += count
        except OSError as e:
            self.failed += count
            if not self._error_reported:
                self._error_reported = True
                print(f"cd4ml.serve: error: cannot write the prediction log to {self.target}: "
                      f"{e.strerror}; predictions are still answered", file=sys.stderr, flush=True)

    def _rotate(self, size: int) -> None:
        """Under the writers' lock: follow a rotation another worker made, or make one."""
        assert self._path is not None
        mine = os.fstat(self._fd)
        try:
            current = os.stat(self._path)
        except FileNotFoundError:
            current = None
        if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
            self._reopen()
            mine = os.fstat(self._fd)
        if not (0 < mine.st_size and mine.st_size + size > self._max_bytes):
            return
        if not os.path.isfile(self._path):
            return  # a FIFO or a device: nothing to rotate
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        os.rename(self._path, rotated_name(self._path, stamp))
        self._reopen()
        self.rotated += 1
        for old in rotated_files(self._path)[:-self._keep or None]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old)

    def _reopen(self) -> None:
        fd = _open(self._path or "")
        os.close(self._fd)
        self._fd = fd


def _open(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def rotated_name(path: str, stamp: str) -> str:
    """``predictions.jsonl`` -> ``predictions.<stamp>.jsonl`` (still read by ``*.jsonl`` globs)."""
    base = path.removesuffix(".jsonl")
    return f"{base}.{stamp}.jsonl"


def rotated_files(path: str) -> list[str]:
    """The rotated files of the log ``path``, oldest first."""
    base = Path(path.removesuffix(".jsonl"))
    pattern = re.compile(re.escape(base.name) + r"\.\d{8}T\d{6}\.\d{6}Z\.jsonl")
    return sorted(str(p) for p in base.parent.glob(f"{base.name}.*.jsonl")
                  if pattern.fullmatch(p.name))
