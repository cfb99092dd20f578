"""``python -m cd4ml.serve --model-dir DIR --host H --port P``: the image's entry point.

Options default to environment variables so that an orchestrator can configure the server
without changing the command: ``CD4ML_MODEL_DIR``, ``CD4ML_HOST``, ``CD4ML_PORT``,
``CD4ML_WORKERS`` (``auto``, the default: one per CPU the container may use),
``CD4ML_KEEP_ALIVE`` (75 s), ``CD4ML_HEADER_TIMEOUT`` (10 s) and ``CD4ML_REFUSE_UNTIL_READY``. Each worker's
numeric thread pools get an equal share of the CPUs unless ``OMP_NUM_THREADS`` says otherwise
(see :mod:`cd4ml.serve.resources`). Exit codes: 0 after a clean stop, 2 when the model cannot be served
(sha256 mismatch, missing or inconsistent artifact, port taken).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m cd4ml.serve",
                                description="Serve a cd4ml model artifact over HTTP.")
    p.add_argument("--model-dir", default=env("CD4ML_MODEL_DIR"), metavar="DIR",
                   help="the artifact directory (model.pkl + model.json); default $CD4ML_MODEL_DIR")
    p.add_argument("--host", default=env("CD4ML_HOST", "127.0.0.1"),
                   help="address to listen on (default $CD4ML_HOST or 127.0.0.1; 0.0.0.0 in a "
                        "container)")
    p.add_argument("--port", type=int, default=int(env("CD4ML_PORT", "8080")),
                   help="port (default $CD4ML_PORT or 8080; 0 picks a free one)")
    p.add_argument("--workers", default=env("CD4ML_WORKERS", "auto"),
                   help="server processes sharing the port, or 'auto' for one per CPU the "
                        "container may use (default $CD4ML_WORKERS or auto)")
    add_limits(p)
    return p


def add_limits(p: argparse.ArgumentParser) -> None:
    """The server's options that ``cd4ml serve`` shares with the image's entry point."""
    env = os.environ.get
    p.add_argument("--max-rows", type=_rows, default=10_000, metavar="N",
                   help="most rows in one request (default 10000)")
    p.add_argument("--keep-alive", type=_seconds, default=env("CD4ML_KEEP_ALIVE", "75"),
                   metavar="SECONDS",
                   help="close a connection idle this long (default $CD4ML_KEEP_ALIVE or 75); a "
                        "proxy in front must close its idle connections to the server sooner")
    p.add_argument("--header-timeout", type=_seconds, default=env("CD4ML_HEADER_TIMEOUT", "10"),
                   metavar="SECONDS",
                   help="answer 408 and close when a request's headers take longer (default "
                        "$CD4ML_HEADER_TIMEOUT or 10)")
    p.add_argument("--refuse-until-ready", action="store_true",
                   default=env("CD4ML_REFUSE_UNTIL_READY", "") not in ("", "0", "false"),
                   help="refuse connections until the model is loaded instead of answering "
                        "503 (and /health) meanwhile: for a proxy that picks among servers by "
                        "DNS (default $CD4ML_REFUSE_UNTIL_READY)")


def _rows(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 86_400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.model_dir:
        print("cd4ml.serve: error: no model directory; pass --model-dir DIR or set "
              "CD4ML_MODEL_DIR", file=sys.stderr)
        return 2
    from cd4ml.serve.resources import choose_workers

    try:
        workers = choose_workers(args.workers)
    except ValueError as e:
        print(f"cd4ml.serve: error: {e}; pass --workers N or set CD4ML_WORKERS", file=sys.stderr)
        return 2
    try:
        options = server_options(args, workers)
    except ValueError as e:
        print(f"cd4ml.serve: error: {e}", file=sys.stderr)
        return 2
    from cd4ml.serve.server import StartError, serve

    if not os.environ.get("CD4ML_MODEL_SHA256"):
        # model.json names its own sha256: it proves the file is whole, not that it is the
        # model anyone recorded. cd4ml's images and `cd4ml serve` always pin it.
        print("cd4ml.serve: warning: CD4ML_MODEL_SHA256 is not set: serving whatever model "
              f"{args.model_dir}/model.json describes, unchecked against any record; set it to "
              "the recorded sha256", file=sys.stderr, flush=True)
    try:
        return serve(args.model_dir, host=args.host, port=args.port,
                     expected_sha256=os.environ.get("CD4ML_MODEL_SHA256") or None,
                     log_path=prediction_log_path(os.environ), **options)
    except StartError as e:
        print(f"cd4ml.serve: error: {e}", file=sys.stderr, flush=True)
        return 2


def server_options(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """:func:`cd4ml.serve.server.serve`'s keyword arguments from the options :func:`add_limits`
    added, with each worker's thread budget applied to this process's environment (before
    numpy or scikit-learn load: their thread pools read it once). Raises ``ValueError`` for a
    bad ``CD4ML_PREDICTION_LOG_*`` setting."""
    from cd4ml.serve.predlog import LogPolicy
    from cd4ml.serve.resources import limit_threads, thread_budget

    try:
        policy = LogPolicy.from_env(os.environ)
    except ValueError as e:
        raise ValueError(f"{e}; set it to a whole number or unset it") from None
    threads = thread_budget(workers)
    limit_threads(threads)
    return {"workers": workers, "max_rows": args.max_rows, "threads": threads,
            "log_policy": policy, "keep_alive": args.keep_alive,
            "header_timeout": args.header_timeout, "refuse_until_ready": args.refuse_until_ready}


def prediction_log_path(environ: dict | os._Environ) -> str | None:
    """``CD4ML_PREDICTION_LOG`` names the file; ``CD4ML_PREDICTION_LOG_DIR`` a directory shared
    by an environment's containers, where each writes ``<hostname>.jsonl`` (a container's
    hostname is its id), so replicas and blue/green colours never write one file together."""
    if environ.get("CD4ML_PREDICTION_LOG"):
        return environ["CD4ML_PREDICTION_LOG"]
    directory = environ.get("CD4ML_PREDICTION_LOG_DIR")
    if directory:
        import socket

        return os.path.join(directory, f"{socket.gethostname()}.jsonl")
    return None


if __name__ == "__main__":
    sys.exit(main())
