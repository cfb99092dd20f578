"""The prediction log: every recorded prediction becomes exactly one valid JSON line."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time

import pytest

from cd4ml.serve.predlog import PredictionLog

MODEL = {"pipeline": "wine", "model_version": 3, "model_sha256": "ab" * 32}


def lines(path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_line_per_prediction_with_inputs_as_records(tmp_path):
    path = tmp_path / "predictions.jsonl"
    log = PredictionLog(str(path), MODEL)
    log.record(1700000000.25, "req-1", ["a", "b"], [[1.5, None], [2, "x"]], [0, 1],
               [{"0": 0.9, "1": 0.1}, {"0": 0.2, "1": 0.8}])
    log.close()
    [line] = lines(path)
    assert line == {"time": "2023-11-14T22:13:20.250000Z", "request_id": "req-1", **MODEL,
                    "inputs": [{"a": 1.5, "b": None}, {"a": 2, "b": "x"}],
                    "predictions": [0, 1],
                    "probabilities": [{"0": 0.9, "1": 0.1}, {"0": 0.2, "1": 0.8}]}
    assert log.written == 1 and log.failed == 0


def test_concurrent_records_lose_nothing_and_never_interleave(tmp_path):
    path = tmp_path / "predictions.jsonl"
    log = PredictionLog(str(path), MODEL)
    big = [[float(i)] * 50 for i in range(40)]  # ~10 KB lines, over a pipe's atomic size

    def client(t: int) -> None:
        for i in range(250):
            log.record(time.time(), f"t{t}-{i}", [f"f{k}" for k in range(50)],
                       big if i % 50 == 0 else [[i]], [i], None)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    log.close()
    got = lines(path)
    assert len(got) == 2000
    assert sorted(x["request_id"] for x in got) == sorted(f"t{t}-{i}" for t in range(8)
                                                          for i in range(250))


def _worker(path: str, lock, worker: int) -> None:
    log = PredictionLog(path, MODEL, lock=lock)
    for i in range(300):
        log.record(time.time(), f"w{worker}-{i}", ["x"], [[i]] * (3000 if i % 5 == 0 else 1),
                   [0], None)
    log.close()


@pytest.mark.parametrize("target", ["file", "pipe"])
def test_worker_processes_share_one_log_without_torn_lines(tmp_path, target):
    ctx = multiprocessing.get_context("fork")
    lock = ctx.Lock()
    path = tmp_path / "predictions.jsonl"
    if target == "pipe":
        os.mkfifo(tmp_path / "fifo")
        fifo = str(tmp_path / "fifo")
        received = bytearray()

        def drain() -> None:
            with open(fifo, "rb") as f:
                while chunk := f.read(65536):
                    received.extend(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        name = fifo
    else:
        name = str(path)
    procs = [ctx.Process(target=_worker, args=(name, lock, w)) for w in range(3)]
    if target == "pipe":
        # every writer must hold the FIFO open before the first one closes it, or the
        # reader sees end-of-file early
        keep = os.open(fifo, os.O_WRONLY)
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    if target == "pipe":
        os.close(keep)
        reader.join()
        path.write_bytes(bytes(received))
    got = lines(path)
    assert len(got) == 900
    assert {x["request_id"] for x in got} == {f"w{w}-{i}" for w in range(3) for i in range(300)}


def test_an_unwritable_log_is_reported_once_and_counted(capsys):
    log = PredictionLog("/dev/full", MODEL)  # every write fails: no space left on device
    log.record(time.time(), "a", ["x"], [[1]], [0], None)
    log.record(time.time(), "b", ["x"], [[1]], [0], None)
    log.close()
    assert log.failed == 2 and log.written == 0
    assert capsys.readouterr().err.count("cannot write the prediction log to /dev/full") == 1


def test_a_refused_request_is_a_line_of_its_own(tmp_path):
    """What monitoring counts as refused: the server's 422 for a row it cannot take."""
    from cd4ml.artifacts import ArtifactMeta
    from cd4ml.serve import schema
    from cd4ml.serve.app import ENDPOINTS, App, Request
    from cd4ml.serve.metrics import Layout, Metrics

    path = tmp_path / "predictions.jsonl"
    log = PredictionLog(str(path), MODEL)
    signature = {"inputs": [{"name": "a", "dtype": "float"}], "classes": [0, 1]}
    meta = ArtifactMeta(pipeline="wine", task="classification", sha256="ab" * 32,
                        signature=signature, version=3)
    app = App(meta, schema.fields_of(signature), log, Metrics(Layout(ENDPOINTS, ["0", "1"])))
    app.predictor = object()  # loaded: the request is refused before the model is asked
    with pytest.raises(schema.RequestError) as refused:
        app.predict(Request("req-bad", b'{"instances": [{"b": 1}]}', 1700000000.5))
    log.close()
    [line] = lines(path)
    assert refused.value.status == 422
    assert line == {"time": "2023-11-14T22:13:20.500000Z", "request_id": "req-bad", **MODEL,
                    "refused": {"status": 422, "error": refused.value.message}}
