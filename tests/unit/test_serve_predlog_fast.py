"""The prediction log's cheap encoding, its bounded queue and its rotation."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

import pytest

from cd4ml.serve.jsontext import records, values
from cd4ml.serve.predictor import Prediction
from cd4ml.serve.predlog import LogPolicy, PredictionLog, rotated_files

MODEL = {"pipeline": "wine", "model_version": 3, "model_sha256": "ab" * 32}
VALUES = [0, -7, 2**70, 1.5, -0.0, 1e-300, 1e300, 0.1, True, False, None, "", "Oslo",
          'quo"te', "back\\slash", "per%cent", "ünï©ødé", "tab\tnew\nline", "\u2028"]


def old_records(names, rows) -> str:
    """What the log wrote before: json.dumps of a dict per row."""
    return json.dumps([dict(zip(names, r)) for r in rows], separators=(",", ":"),
                      default=str)[1:-1]


def same_json(got: bytes, want: str) -> bool:
    """The same JSON, ASCII only as json.dumps writes it: keys, order, values and types (an int
    stays an int); the spelling of a float may differ (orjson's 1e-5 for json's 1e-05)."""
    canonical = json.dumps(json.loads(got)), json.dumps(json.loads(want))
    return got.isascii() and canonical[0] == canonical[1]


def test_the_inputs_are_the_json_json_dumps_made():
    rng = random.Random(19)
    names = ["a", "per%cent", 'q"uote', "ü"]
    for _ in range(500):
        kinds = [rng.choice([VALUES[:8], VALUES]) for _ in names]  # numbers-only columns too
        rows = [[rng.choice(k) for k in kinds] for _ in range(rng.choice([1, 2, 5, 250]))]
        got = b"[" + records(names, rows) + b"]"
        assert same_json(got, "[" + old_records(names, rows) + "]"), rows
    numbers = [[rng.random() * 10 ** rng.randint(-5, 5), rng.randint(-9, 9)] for _ in range(50)]
    assert same_json(b"[" + records(["x", "n"], numbers) + b"]",
                     "[" + old_records(["x", "n"], numbers) + "]")
    assert records(["x"], []) == b""


def test_model_outputs_are_encoded_as_json_dumps_would_nan_included():
    rng = random.Random(7)
    proba = [[rng.random(), 0.0, 1e-300] for _ in range(20)]
    p = Prediction(["a"] * 20, proba, ("a", 'b"', "1"))
    assert same_json(p.probabilities_json(), json.dumps(p.probabilities))
    odd = Prediction([1], [[float("nan"), 1.0]], ("0", "1"), finite=False)
    assert odd.probabilities_json() == b'[{"0":NaN,"1":1.0}]'
    assert Prediction([1.5]).probabilities_json() == b"null"
    # orjson writes NaN, infinity as null, refuses huge integers, writes UTF-8: json takes over
    for labels in ([1.5, float("nan")], [float("inf")], [2**70, 1], ["Zürich"], ["\u2028"],
                   ["null"], [True, None, "a"]):
        assert values(labels) == json.dumps(labels, separators=(",", ":")).encode(), labels
    assert values([0.25, 3, "a"]) == b'[0.25,3,"a"]'


def test_a_full_queue_makes_requests_wait_and_loses_nothing(tmp_path):
    """Bounded: with the writer stuck, record() blocks once the rows budget is used."""
    read, write = os.pipe()
    log = PredictionLog(None, MODEL, max_pending_rows=100)
    log._fd = write  # a pipe nobody reads yet: the writer blocks on its first full write
    rows = [[float(i)] * 200 for i in range(10)]  # ~40 kB a line, over a pipe's buffer soon
    done = []

    def client() -> None:
        for i in range(200):
            log.record(time.time(), f"r{i}", [f"f{k}" for k in range(200)], rows, [0] * 10, None)
            done.append(i)

    t = threading.Thread(target=client)
    t.start()
    time.sleep(1.0)
    stuck = len(done)
    assert stuck < 200 and log._pending <= 100  # waiting, not growing
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read, 1 << 16):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    t.join(60)
    log.close()
    os.close(write)
    reader.join(60)
    got = [json.loads(line) for line in bytes(received).decode().splitlines()]
    assert [g["request_id"] for g in got] == [f"r{i}" for i in range(200)]
    os.close(read)


def test_the_log_rotates_keeps_a_few_and_no_line_is_split(tmp_path):
    (tmp_path / "logs").mkdir()
    path = tmp_path / "logs" / "host.jsonl"
    log = PredictionLog(str(path), MODEL, max_bytes=4000, keep=2)
    for i in range(300):
        log.record(time.time(), f"r{i}", ["x", "y"], [[i, 0.5]] * 5, [0] * 5, None)
        if i % 50 == 0:
            time.sleep(0.05)  # let some writes happen separately
    log.close()
    kept = rotated_files(str(path))
    assert log.rotated >= 3 and len(kept) == 2
    assert all(p.endswith(".jsonl") for p in kept)
    ids = []
    for p in [*kept, str(path)]:
        ids += [json.loads(line)["request_id"] for line in Path(p).read_text().splitlines()]
    # the newest lines are all there, in order, and each line whole
    assert ids == [f"r{i}" for i in range(300 - len(ids), 300)]
    assert sorted(os.listdir(tmp_path / "logs")) == sorted([os.path.basename(p) for p in kept]
                                                  + ["host.jsonl"])


def test_workers_follow_a_rotation_made_by_another(tmp_path):
    path = tmp_path / "predictions.jsonl"
    lock = threading.Lock()  # the server's workers share one (a multiprocessing lock)
    a = PredictionLog(str(path), MODEL, lock=lock, max_bytes=1500, keep=100)
    b = PredictionLog(str(path), MODEL, lock=lock, max_bytes=1500, keep=100)
    for i in range(60):
        (a if i % 2 else b).record(time.time(), f"r{i}", ["x"], [[i]] * 3, [0] * 3, None)
        time.sleep(0.005)
    a.close()
    b.close()
    files = [*rotated_files(str(path)), str(path)]
    assert len(files) >= 3
    # each worker writes to the current file: none grows past the limit by more than a write
    assert max(os.path.getsize(p) for p in files) < 1500 + 1000
    ids = {json.loads(line)["request_id"] for p in files 
           for line in Path(p).read_text().splitlines()}
    assert ids == {f"r{i}" for i in range(60)}


def test_the_size_policy_comes_from_the_environment_or_is_refused_by_name():
    assert LogPolicy.from_env({}) == LogPolicy(256 << 20, 4)
    assert LogPolicy.from_env({"CD4ML_PREDICTION_LOG_MAX_MB": "10",
                               "CD4ML_PREDICTION_LOG_KEEP": "0"}) == LogPolicy(10 << 20, 0)
    with pytest.raises(ValueError, match=r"CD4ML_PREDICTION_LOG_MAX_MB='0' is not a whole"):
        LogPolicy.from_env({"CD4ML_PREDICTION_LOG_MAX_MB": "0"})
    with pytest.raises(ValueError, match=r"CD4ML_PREDICTION_LOG_KEEP='-1' is not a whole"):
        LogPolicy.from_env({"CD4ML_PREDICTION_LOG_KEEP": "-1"})


CHILD = """
import signal, sys, threading, time
from cd4ml.serve.predlog import PredictionLog
log = PredictionLog(sys.argv[1], {"pipeline": "p"}, max_pending_rows=2000, max_bytes=100_000,
                    keep=1000)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
counts = [0] * 8
def client(t):
    rows = [[float(i), i, "x"] for i in range(50)]
    while not stop.is_set():
        log.record(time.time(), f"{t}-{counts[t]}", ["a", "b", "c"], rows, [0] * 50, None)
        counts[t] += 1
threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
for th in threads:
    th.start()
print("started", flush=True)
stop.wait()
for th in threads:
    th.join()
log.close()
print(sum(counts), flush=True)
"""


def test_sigterm_under_load_writes_every_recorded_line(tmp_path):
    """Eight threads recording flat out into a bounded queue; SIGTERM; close(): nothing lost."""
    import subprocess
    import sys

    path = tmp_path / "logs" / "p.jsonl"
    path.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.5)
    proc.send_signal(15)
    recorded = int(proc.stdout.readline())
    assert proc.wait(60) == 0
    files = [*rotated_files(str(path)), str(path)]
    assert len(files) > 1  # it rotated meanwhile
    ids = [json.loads(line)["request_id"] for p in files
           for line in Path(p).read_text().splitlines()]
    assert recorded > 0 and len(ids) == len(set(ids)) == recorded
