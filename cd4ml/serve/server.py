"""Start-up, worker processes and shutdown of the model server.

Order of events: verify the artifact's sha256 (refuse to start on a mismatch, before anything
listens), listen, then in each worker: answer ``/health`` at once (``/ready`` and ``/predict``
say 503), load the model, become ready. SIGTERM or SIGINT: close the listening socket first (a
front retries a refused connection elsewhere), finish the requests in flight (up to ``grace``
seconds), close idle connections, write out the prediction log, exit 0.

Each worker serves HTTP with uvicorn on one asyncio event loop: a connection costs a few
kilobytes, not a thread, so thousands of slow or idle clients do not crowd out the others
(see :mod:`cd4ml.serve.protocol` for the deadlines). Predictions run on the loop itself: a
single-row prediction is well under a millisecond after the forest shortcut, less than
handing it to a thread would cost.

``workers > 1`` forks that many processes over the one listening socket (before any thread or
scikit-learn exists), so predictions use every core; they share the metrics (a memory map)
and a lock around prediction-log writes. Worker 0 takes connections from the start (so
``/health`` answers while models load), the others once loaded, and ``/ready`` says 200 only
when every worker has its model. The parent only supervises: it forwards SIGTERM, and
if a worker dies it stops the others and exits non-zero, for the orchestrator to restart.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from cd4ml import artifacts
from cd4ml.serve import schema
from cd4ml.serve.app import ENDPOINTS, App
from cd4ml.serve.handler import Asgi
from cd4ml.serve.metrics import Layout, Metrics, shared
from cd4ml.serve.predlog import LogPolicy, PredictionLog
from cd4ml.serve.protocol import HEADER_TIMEOUT, LimitedProtocol

#: seconds an idle keep-alive connection is kept open; a proxy in front must give up on its
#: idle upstream connections sooner (nginx's upstream ``keepalive_timeout``, 60 s by default),
#: or it may send a request on a connection the server is closing
KEEP_ALIVE = 75.0


class StartError(Exception):
    """The server cannot start: a one-line reason (the process exits non-zero with it)."""


def verify(model_dir: Path, expected_sha256: str | None) -> artifacts.ArtifactMeta:
    """Read model.json and check model.pkl's sha256 against it and against ``expected_sha256``.

    Done before listening, so a tampered or substituted model never serves, not even /health.
    (:func:`cd4ml.artifacts.load` checks again right before unpickling.)
    """
    try:
        meta = artifacts.read_meta(model_dir)
    except artifacts.ArtifactMismatch as e:
        raise StartError(str(e)) from None
    if expected_sha256 and expected_sha256.strip().lower() != meta.sha256:
        raise StartError(f"{model_dir / artifacts.META_FILE}: records sha256 {meta.sha256[:12]}..., "
                         f"but CD4ML_MODEL_SHA256 is {expected_sha256.strip()[:12]}...; this is "
                         "not the model that was built or deployed")
    path = model_dir / artifacts.MODEL_FILE
    try:
        actual = artifacts.sha256_file(path)
    except FileNotFoundError:
        raise StartError(f"{path}: missing; the model directory is incomplete") from None
    if actual != meta.sha256:
        raise StartError(f"{path}: sha256 {actual[:12]}... does not match the recorded "
                         f"{meta.sha256[:12]}...; refusing to load a model that is not the one "
                         "recorded")
    return meta


@dataclass(frozen=True)
class Limits:
    """What one request and one connection may take, and how long a stop may wait."""

    max_rows: int = 10_000
    max_body: int = 16 << 20
    #: seconds the requests in flight get to finish after SIGTERM (under Docker's 10)
    grace: float = 8.0
    keep_alive: float = KEEP_ALIVE
    header_timeout: float = HEADER_TIMEOUT


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          expected_sha256: str | None = None, log_path: str | None = None,
          max_rows: int = 10_000, max_body: int = 16 << 20, grace: float = 8.0,
          threads: int | None = None, log_policy: LogPolicy | None = None,
          keep_alive: float = KEEP_ALIVE, header_timeout: float = HEADER_TIMEOUT,
          refuse_until_ready: bool = False) -> int:
    """Serve the model in ``model_dir`` until SIGTERM/SIGINT; returns the exit code.

    Raises :class:`StartError` when the artifact fails verification, cannot be loaded, or the
    port cannot be had. ``grace`` bounds the wait for requests in flight at shutdown (under
    Docker's 10 s between SIGTERM and SIGKILL). ``threads`` caps each worker's numeric thread
    pools (default: an equal share of the CPUs, see :mod:`cd4ml.serve.resources`).
    ``keep_alive``: seconds an idle connection is kept; ``header_timeout``: seconds a
    request's headers may take to arrive. ``refuse_until_ready``: the port refuses connections
    until the model is loaded (no ``/health`` meanwhile), so that a proxy in front sends a
    request to another server instead of getting a 503 from this one (a restarted Swarm task
    that its service's DNS lists before it is ready).
    """
    started = time.perf_counter()
    model_dir = Path(model_dir)
    limits = Limits(max_rows, max_body, grace, keep_alive, header_timeout)
    if threads is None:
        from cd4ml.serve.resources import thread_budget

        threads = thread_budget(workers)
    if workers > 1:
        return _supervise(model_dir, host, port, workers, expected_sha256, log_path, limits,
                          started, threads, log_policy or LogPolicy(), refuse_until_ready)
    stop = threading.Event()
    # before anything can be seen to listen: a SIGTERM from then on must stop us cleanly
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        job, sock = _prepare(model_dir, host, port, 1, expected_sha256, log_path, limits,
                             started, threads, log_policy or LogPolicy(), refuse_until_ready)
        try:
            return job.run(sock, stop, None, 0, 1, None)
        finally:
            sock.close()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def listen(host: str, port: int, now: bool = True) -> socket.socket:
    """A listening TCP socket; made before the workers fork so that they all share it. Not
    ``now``: only bound (connections are refused, not queued) until a worker serves on it
    (asyncio's server listens on the socket it is given)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # as socket.create_server does (which would also listen)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        if now:
            sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _prepare(model_dir: Path, host: str, port: int, workers: int, expected_sha256: str | None,
             log_path: str | None, limits: Limits, started: float,
             threads: int, log_policy: LogPolicy,
             refuse_until_ready: bool) -> tuple[_Job, socket.socket]:
    """Verify, read the signature, listen: everything that happens once, before any worker."""
    meta = verify(model_dir, expected_sha256)
    try:
        fields = schema.fields_of(meta.signature)
    except ValueError as e:
        raise StartError(f"{model_dir / artifacts.META_FILE}: {e}") from None
    classes = [schema.label_key(c) for c in meta.signature.get("classes") or []]
    layout = Layout(ENDPOINTS, classes)
    try:
        sock = listen(host, port, now=not refuse_until_ready)
    except OSError as e:
        raise StartError(f"cannot listen on {host}:{port}: {e.strerror}; choose another "
                         "--port") from None
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}"
    _say(f"{meta.pipeline}:{meta.version} (sha256 {meta.sha256[:12]}) listening on {url}"
         + (f" with {workers} workers" if workers > 1 else "")
         + (" (refusing connections until the model is loaded)" if refuse_until_ready else ""))
    job = _Job(model_dir, meta, fields, layout, expected_sha256, log_path, limits, started, threads,
               log_policy, refuse_until_ready)
    return job, sock


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, stopped by our own signal handlers (set before it exists)."""

    def __init__(self, config: uvicorn.Config, stop: threading.Event, who: str):
        super().__init__(config)
        self.stop, self.who = stop, who

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own handlers would re-raise the signal once it has shut down: a clean
        # stop would end as killed by SIGTERM instead of exit 0
        yield

    async def on_tick(self, counter: int) -> bool:
        if self.stop.is_set() and not self.should_exit:
            self.should_exit = True
            _say(f"{self.who}stopping: no new connections, finishing requests in flight")
        return await super().on_tick(counter)


class _Job:
    """What one worker needs to serve; :meth:`run` is the whole life of a worker."""

    def __init__(self, model_dir: Path, meta: artifacts.ArtifactMeta,
                 fields: tuple[schema.Field, ...], layout: Layout, expected_sha256: str | None,
                 log_path: str | None, limits: Limits, started: float, threads: int,
                 log_policy: LogPolicy, refuse_until_ready: bool):
        self.model_dir, self.meta, self.fields, self.layout = model_dir, meta, fields, layout
        self.expected_sha256, self.log_path = expected_sha256, log_path
        self.limits, self.started, self.threads = limits, started, threads
        self.log_policy, self.refuse_until_ready = log_policy, refuse_until_ready

    def run(self, sock: socket.socket, stop: threading.Event, memory: Any, worker: int,
            workers: int, log_lock: Any, loaded: Any = None) -> int:
        """Serve on ``sock`` until ``stop`` is set (by the caller's signal handlers)."""
        meta, limits = self.meta, self.limits
        who = f"worker {worker}: " if workers > 1 else ""
        log = PredictionLog(self.log_path, {"pipeline": meta.pipeline,
                                            "model_version": meta.version,
                                            "model_sha256": meta.sha256}, lock=log_lock,
                            policy=self.log_policy)
        metrics = Metrics(self.layout, {"pipeline": meta.pipeline, "version": str(meta.version),
                                        "sha256": meta.sha256}, memory, worker, workers)
        app = App(meta, self.fields, log, metrics, limits.max_rows, limits.max_body)
        app.workers, app.threads = workers, self.threads
        if loaded is not None:
            app.peers = lambda: loaded.value >= workers
        server = _Uvicorn(_config(Asgi(app), limits), stop, who)
        failed: list[StartError] = []

        def load() -> None:
            try:
                self._load(app)
            except StartError as e:
                failed.append(e)
                stop.set()
                return
            if loaded is not None:
                with loaded.get_lock():
                    loaded.value += 1
            shortcut = (" (ONNX Runtime)" if app.predictor.runtime == "onnx" else
                        " (forest shortcut)" if app.predictor.shortcut else
                        " (one model call per request)" if app.predictor.single_call else "")
            _say(f"{who}ready in {time.perf_counter() - self.started:.2f} s{shortcut}; "
                 f"predictions log to {log.target}")

        try:
            gc.disable()
            if worker == 0 and not self.refuse_until_ready:
                # worker 0 answers /health while it loads; the others take connections only
                # once loaded, so after the first /ready 200 no request meets one still loading
                threading.Thread(target=load, name="cd4ml-load", daemon=True).start()
            else:
                load()
            if not failed:
                server.run(sockets=[sock])
        finally:
            gc.enable()
            log.close()
        if failed:
            raise failed[0]
        _say(f"{who}stopped; {log.written} prediction(s) logged"
             + (f", {log.failed} could not be written" if log.failed else ""))
        return 0

    def _load(self, app: App) -> None:
        from cd4ml.serve.compiled import CompiledMismatch
        from cd4ml.serve.predictor import ModelMismatch, load, quiet_positional

        try:
            predictor = load(self.model_dir, self.fields,
                             self.expected_sha256 or self.meta.sha256, self.threads)
        except (artifacts.ArtifactMismatch, CompiledMismatch) as e:
            raise StartError(str(e)) from None
        except ModelMismatch as e:
            raise StartError(f"{self.model_dir}: {e}") from None
        except Exception as e:  # noqa: BLE001 - unpickling can raise anything; it is fatal
            raise StartError(f"{self.model_dir / artifacts.MODEL_FILE}: cannot load the model: "
                             f"{type(e).__name__}: {e}") from None
        if predictor.positional:
            quiet_positional()
        from cd4ml.serve.resources import limit_loaded_pools

        limit_loaded_pools(self.threads)
        # scikit-learn, scipy and the model are a few hundred thousand long-lived objects: a
        # full collection walking them all takes milliseconds, which showed in the p99 latency.
        # Frozen, collections never look at them again (and collecting during the imports,
        # switched off in run(), was a tenth of the start-up time)
        gc.freeze()
        gc.enable()
        app.predictor = predictor
        app.ready_at = time.time()


def _supervise(model_dir: Path, host: str, port: int, workers: int, expected_sha256: str | None,
               log_path: str | None, limits: Limits, started: float, threads: int,
               log_policy: LogPolicy, refuse_until_ready: bool) -> int:
    import multiprocessing

    children: dict[int, int] = {}
    stopping: list[bool] = []

    def stop(*_: Any) -> None:
        stopping.append(True)
        for pid in children:
            _kill(pid)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        job, sock = _prepare(model_dir, host, port, workers, expected_sha256, log_path, limits,
                             started, threads, log_policy, refuse_until_ready)
        memory = shared(job.layout, workers)
        context = multiprocessing.get_context("fork")
        log_lock = context.Lock()
        #: workers that have loaded the model, counted in shared memory
        loaded = context.Value("i", 0)
        sys.stdout.flush()
        sys.stderr.flush()
        for worker in range(workers):
            if stopping:
                break
            pid = os.fork()
            if pid == 0:
                _child(job, sock, memory, worker, workers, log_lock, loaded)
            children[pid] = worker
        sock.close()
        return _wait(children, stopping, stop)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _child(job: _Job, sock: socket.socket, memory: Any, worker: int, workers: int,
           log_lock: Any, loaded: Any) -> None:
    """A worker's whole life; never returns into the parent's code."""
    code = 1
    try:
        halt = threading.Event()
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, lambda *_: halt.set())
        code = job.run(sock, halt, memory, worker, workers, log_lock, loaded)
    except StartError as e:
        print(f"cd4ml.serve: error: worker {worker}: {e}", file=sys.stderr, flush=True)
        code = 2
    except BaseException:  # noqa: BLE001 - a worker's crash must still reach os._exit
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _wait(children: dict[int, int], stopping: list[bool], stop: Any) -> int:
    code = 0
    while children:
        pid, status = os.wait()
        if pid not in children:
            continue
        worker = children.pop(pid)
        exit_code = os.waitstatus_to_exitcode(status)
        if not stopping:
            # a worker ended on its own: the server is no longer whole, stop it all
            _say(f"worker {worker} exited with {exit_code}; stopping the server")
            code = exit_code if exit_code > 0 else 1
            stop()
        elif exit_code not in (0, -signal.SIGTERM) and not code:
            # (killed by SIGTERM: it was stopped before it could set its own handler)
            code = exit_code if exit_code > 0 else 1
    return code


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _config(asgi: Asgi, limits: Limits) -> uvicorn.Config:
    protocol = type("Protocol", (LimitedProtocol,), {"header_timeout": limits.header_timeout})
    # no lifespan, access log, proxy headers, websockets or uvloop: a model server's needs, and
    # what the image installs (uvicorn without its [standard] extras, plus httptools)
    config = uvicorn.Config(asgi, http=protocol, loop="asyncio", ws="none", lifespan="off",
                            interface="asgi3", log_config=None, log_level="error",
                            access_log=False, proxy_headers=False, server_header=False,
                            headers=[("server", "cd4ml-serve")],
                            timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]
                            timeout_graceful_shutdown=limits.grace)  # type: ignore[arg-type]
    return config


def _say(message: str) -> None:
    print(f"cd4ml.serve: {message}", file=sys.stderr, flush=True)
