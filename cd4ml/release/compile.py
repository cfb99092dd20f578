"""The build's compile stage: the model converted to ONNX and held to parity, inside an image.

For ``image.runtime: auto | onnx`` (``auto`` is the default). The compile stage's image is the
scikit-learn image's template with the converter's pins added (skl2onnx and onnxruntime, the
very versions of this machine) and no model in it
(:func:`cd4ml.release.dockerfile.make_context` with ``compiler=True``): it is the same for every
model version of a pipeline, so the engine's layer cache builds it once and every later build,
offline ones included, finds it whole in a second or two. It stays tagged
``<repository>:cd4ml-compiler`` (labelled ``cd4ml.role=compiler``) as that cache; the one it
replaces, when the server code or the pins change, is removed by its id.

A container of it runs :mod:`cd4ml.serve.compile` on the held-out rows, with the model
bind-mounted read-only — as the image's unprivileged user, with no network and a read-only
root, writing only into one bind-mounted folder — like infra validation's reference answers:
the build host never unpickles a model. What comes back is data (``model.onnx`` is a protobuf,
``compiled.json`` JSON). The same image and mount give infra validation scikit-learn's own
answers when the ONNX image wins, so no scikit-learn image is built then.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cd4ml.errors import BuildError
from cd4ml.release.dockerfile import MODEL_DIR

if TYPE_CHECKING:
    from collections.abc import Callable

    import docker

    from cd4ml.release.dockerfile import Context
    from cd4ml.store import ModelVersion

log = logging.getLogger("cd4ml.release.compile")


@dataclass(frozen=True)
class CompileOutcome:
    runtime: str  # onnx (model.onnx and compiled.json are in ``directory``) | sklearn
    reason: str
    report: dict
    directory: Path | None
    compiler: str | None = None  # the compile stage's image id (it holds scikit-learn)


def compiler_tag(repository: str) -> str:
    """Where the compile stage's image of a pipeline stays, as the layer cache of the next build."""
    return f"{repository}:cd4ml-compiler"


def compile_in_image(c: docker.DockerClient, context: Callable[[], Context], tag: str,
                     model_dir: Path, model_sha256: str, rows: list[dict], out: Path,
                     build: Callable[[Context, str], str], *, memory: int) -> CompileOutcome:
    """Build (or find in the cache) the compile stage's image from ``context()``, run the
    conversion in it on the model of ``model_dir`` (model.pkl, model.json; mounted read-only).

    ``build(ctx, tag)`` is the build stage's own engine call (progress events, errors); ``out``
    receives ``model.onnx``/``compiled.json``; ``memory`` caps the conversion's container
    (bytes), like every container cd4ml starts. An image that cannot be built (no network for
    a first build, a user's template that needs a model version's labels) is a verdict:
    scikit-learn, with the reason."""
    from docker.errors import ImageNotFound

    try:
        previous = c.images.get(tag).id
    except ImageNotFound:
        previous = None
    try:
        compiler = build(context(), tag)
    except BuildError as e:
        return CompileOutcome("sklearn", f"the compile stage's image could not be built: {e}",
                              {}, None)
    if previous and previous != compiler:
        _remove_superseded(c, previous)
    outcome = _run(c, compiler, model_dir, model_sha256, rows, out, memory)
    return CompileOutcome(outcome.runtime, outcome.reason, outcome.report, outcome.directory,
                          compiler)


def mountable(model: ModelVersion, directory: Path) -> Path:
    """A copy of the model's artifact (model.pkl, model.json) that the image's user can read,
    to mount into the compile stage's image."""
    import shutil

    from cd4ml.artifacts import META_FILE, MODEL_FILE

    directory.mkdir(mode=0o755, parents=True)
    os.chmod(directory, 0o755)  # the image's user is not the host's
    for name in (MODEL_FILE, META_FILE):
        shutil.copyfile(Path(model.artifact_uri) / name, directory / name)
        os.chmod(directory / name, 0o644)
    return directory


def model_volume(model_dir: Path) -> dict[str, dict[str, str]]:
    """``model_dir`` mounted read-only where the image keeps its model."""
    return {str(model_dir): {"bind": MODEL_DIR, "mode": "ro"}}


def _remove_superseded(c: docker.DockerClient, image_id: str) -> None:
    """Remove a compile stage's image the new one replaced: by id, only when it is cd4ml's
    (labelled so) and nothing tags it any more."""
    try:
        image = c.images.get(image_id)
        if image.tags or image.labels.get("cd4ml.role") != "compiler":
            return
        c.images.remove(image_id)
    except Exception as e:  # noqa: BLE001 - an image in use or already gone stays or is gone
        log.debug("removing the superseded compile stage %s: %s", image_id[:19], e)


def _run(c: docker.DockerClient, compiler: str, model_dir: Path, model_sha256: str,
         rows: list[dict], out: Path, memory: int) -> CompileOutcome:
    from cd4ml.serve.compiled import REPORT_FILE

    with tempfile.TemporaryDirectory(prefix="cd4ml-compile-in-") as tmp:
        os.chmod(tmp, 0o755)  # the image's user is not the host's
        (Path(tmp) / "rows.json").write_text(json.dumps({"instances": rows}))
        os.chmod(Path(tmp) / "rows.json", 0o644)
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o777)  # written by the image's user; a private temporary folder's child
        try:
            said = c.containers.run(
                compiler, ["python", "-m", "cd4ml.serve.compile", "/in/rows.json", "/out"],
                remove=True,
                environment={"CD4ML_MODEL_DIR": MODEL_DIR, "CD4ML_MODEL_SHA256": model_sha256},
                network_mode="none", read_only=True, tmpfs={"/tmp": "size=256m"}, mem_limit=memory,
                volumes={tmp: {"bind": "/in", "mode": "ro"}, str(out): {"bind": "/out", "mode": "rw"},
                         **model_volume(model_dir)},
                stdout=True, stderr=False, labels={"cd4ml.role": "compile"})
        except Exception as e:  # noqa: BLE001 - ContainerError carries the refusal
            return CompileOutcome("sklearn", f"the compile stage failed: {str(e).splitlines()[0][:300]}",
                                  {}, None)
    try:
        report = json.loads((out / REPORT_FILE).read_text())
    except (OSError, ValueError):
        tail = said.decode(errors="replace").strip().splitlines()[-1:] if said else []
        raise BuildError("the compile stage wrote no compiled.json"
                         + (f": {tail[0][:300]}" if tail else "")
                         + "; rerun with --debug, or set image.runtime: sklearn") from None
    runtime = report.get("runtime", "sklearn")
    return CompileOutcome(runtime, str(report.get("reason", "")), report,
                          out if runtime == "onnx" else None)
