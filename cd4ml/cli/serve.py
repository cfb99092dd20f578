"""``cd4ml serve MODEL_VERSION``: run the model server on a registered version, in the foreground.

The same server the image runs (``python -m cd4ml.serve``), on the artifact directory the store
records, with the store's sha256 as the expected one: a model file changed since it was
registered is refused just as it would be in the image.
"""

from __future__ import annotations

import argparse
import os

from cd4ml.cli.common import (
    add_common,
    chosen_model,
    load_pipeline,
    open_store,
    port,
    positive_int,
)
from cd4ml.errors import ArtifactError, Cd4mlError, UsageError
from cd4ml.refs import parse_model_ref
from cd4ml.serve.__main__ import add_limits


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("model", metavar="MODEL_VERSION",
                   help="e.g. wine:3, wine@production, or 3 of the pipeline chosen with -p")
    add_common(p, json=False)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="server processes sharing the port (default 1)")
    add_limits(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cd4ml.serve.__main__ import server_options
    from cd4ml.serve.server import StartError, serve

    ref = parse_model_ref(args.model)
    # a version that names its pipeline needs no spec: the store knows the artifact
    pipeline = load_pipeline(args, ref) if args.pipeline or not ref.pipeline else ref.pipeline
    with open_store(args) as store:
        model = chosen_model(store, pipeline, ref)
    pinned = os.environ.get("CD4ML_MODEL_SHA256")
    if pinned and pinned.strip().lower() != model.sha256:
        raise ArtifactError(f"CD4ML_MODEL_SHA256 is {pinned.strip()[:12]}..., but {model.ref} was "
                            f"registered with sha256 {model.sha256[:12]}...; unset it or serve "
                            "the version it names")
    try:
        options = server_options(args, args.workers)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        return serve(Path(model.artifact_uri), host=args.host, port=args.port,
                     expected_sha256=model.sha256,
                     log_path=os.environ.get("CD4ML_PREDICTION_LOG") or None, **options)
    except StartError as e:
        raise Cd4mlError(f"{model.ref}: {e}") from None
