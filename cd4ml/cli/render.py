"""``cd4ml render --env ENV [MODEL_VERSION] [-o DIR]``: the environment's infrastructure files
(compose/stack file, Kubernetes manifests), for review or for a GitOps repository."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cd4ml.cli.common import add_common, load_pipeline, model_arg, open_store
from cd4ml.errors import StoreError

if TYPE_CHECKING:
    from cd4ml.store import ModelVersion


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)
    p.add_argument("--env", required=True, metavar="ENV")
    p.add_argument("version", nargs="?", metavar="MODEL_VERSION",
                   help="e.g. 3, wine:3 or wine@staging (default: the version current in ENV, "
                        "else the newest blessed one)")
    p.add_argument("-o", "--output", metavar="DIR", help="write the files into DIR (default: print)")
    p.add_argument("--image", metavar="REF",
                   help="the image reference to render (default: the version's infra-validated image)")


def run(args: argparse.Namespace) -> int:
    from cd4ml.refs import find_model
    from cd4ml.release.deploy import deployable_image
    from cd4ml.release.render import render

    ref = model_arg(args.version)
    spec = load_pipeline(args, ref)
    env = spec.environment(args.env)
    image_id = None
    with open_store(args) as store:
        current = store.current_deployment(spec.name, env.name)
        model: ModelVersion | None
        if ref is not None:
            model = find_model(store, ref, spec)
        elif current is not None:
            model = store.model_by_id(current.model_version_id)
        else:
            # before the first model, --image alone shows the infrastructure it would run in
            model = store.latest_model(spec.name, blessed=True)
            if model is None and not args.image:
                raise StoreError(f"{spec.name} has no blessed version to render; name one, or "
                                 "pass --image REF to render the infrastructure for an image")
        if args.image:
            image, digest = args.image, None
        elif current is not None and model is not None and current.model_version_id == model.id:
            image, digest = current.image_ref, current.details.get("image_digest")
            image_id = current.details.get("image_id")
        else:
            assert model is not None
            img = deployable_image(store, model)
            image, digest, image_id = img.reference, img.digest, img.image_id
    rendered = render(spec, env, model, image, digest=digest, image_id=image_id)
    written = rendered.write(args.output) if args.output else None
    if args.json:
        from cd4ml.reporting.console import print_json

        print_json({"target": rendered.target, "environment": rendered.environment,
                    "name": rendered.name, "model_version": model.version if model else None,
                    "image": image,
                    "digest": digest, "files": dict(rendered.files),
                    "sources": dict(rendered.sources), "written": written})
        return 0
    if written is not None:
        for path in written:
            print(path)
        return 0
    for fname, text in rendered.files.items():
        sys.stdout.write(f"# ---- {fname} (from {rendered.sources.get(fname, 'cd4ml')})\n{text}")
        if not text.endswith("\n"):
            sys.stdout.write("\n")
    return 0
