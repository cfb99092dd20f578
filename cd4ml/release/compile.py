"""The build's compile stage: the model converted to ONNX and held to parity, inside an image.

For ``image.runtime: auto | onnx``. The scikit-learn image is built first, as always; a second,
throwaway image adds skl2onnx and onnxruntime on top of it (the very pins of this machine), and
a container of it runs :mod:`cd4ml.serve.compile` on the held-out rows — as the image's
unprivileged user, with no network and a read-only root, writing only into one bind-mounted
folder — like infra validation's reference answers: the build host never unpickles a model.
What comes back is data (``model.onnx`` is a protobuf, ``compiled.json`` JSON). The throwaway
image is removed; the caller builds the ONNX image from the folder when the verdict is onnx.
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
from cd4ml.release.dockerfile import MODEL_DIR, UID, pin

if TYPE_CHECKING:
    from collections.abc import Callable

    import docker

    from cd4ml.release.dockerfile import Context

log = logging.getLogger("cd4ml.release.compile")
#: what the compile stage's container adds to the scikit-learn image
COMPILER_MODULES = ("skl2onnx", "onnxruntime")


@dataclass(frozen=True)
class CompileOutcome:
    runtime: str  # onnx (model.onnx and compiled.json are in ``directory``) | sklearn
    reason: str
    report: dict
    directory: Path | None


def dockerfile(image: str, ca_bundle: str | None, index_url: bool) -> str:
    """The compile stage's Dockerfile: the scikit-learn image plus the converter."""
    cert = f" --cert /tmp/{ca_bundle}" if ca_bundle else ""
    return "\n".join([
        f"FROM {image}",
        "USER root",
        "COPY requirements.txt /tmp/cd4ml-compile.txt",
        *([f"COPY {ca_bundle} /tmp/{ca_bundle}"] if ca_bundle else []),
        *(["ARG PIP_INDEX_URL"] if index_url else []),
        f"RUN pip install --no-cache-dir{cert} -r /tmp/cd4ml-compile.txt && rm -rf /root/.cache /tmp/cd4ml-*",
        f"USER {UID}", ""])


def compile_in_image(c: docker.DockerClient, image: str, tag: str, rows: list[dict],
                     out: Path, build: Callable[[Context, str], str], *,
                     memory: int) -> CompileOutcome:
    """Build the compile stage on ``image``, run the conversion in it, remove it.

    ``build(ctx, tag)`` is the build stage's own engine call (progress events, errors), given a
    :class:`cd4ml.release.dockerfile.Context`; ``out`` receives ``model.onnx``/``compiled.json``;
    ``memory`` caps the conversion's container (bytes), like every container cd4ml starts.
    """
    import shutil

    from cd4ml.release.dockerfile import CA_FILE, Context, Requirements, ca_bundle, pip_index_url

    ca, index_url = ca_bundle(), pip_index_url()
    pins = pin(COMPILER_MODULES)
    with tempfile.TemporaryDirectory(prefix="cd4ml-compile-") as tmp:
        context = Path(tmp)
        text = dockerfile(image, CA_FILE if ca else None, bool(index_url))
        (context / "Dockerfile").write_text(text)
        (context / "requirements.txt").write_text("".join(f"{p}\n" for p in pins))
        if ca:
            shutil.copyfile(ca, context / CA_FILE)
        ctx = Context(context, text, Requirements(pins, ()),
                      {"PIP_INDEX_URL": index_url} if index_url else {})
        compiler = build(ctx, tag)
    try:
        return _run(c, compiler, rows, out, memory)
    finally:
        try:
            c.images.remove(compiler, force=True)
        except Exception as e:  # noqa: BLE001 - a leftover throwaway image is no failure
            log.debug("removing the compile stage %s: %s", compiler[:19], e)


def _run(c: docker.DockerClient, compiler: str, rows: list[dict], out: Path,
         memory: int) -> CompileOutcome:
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
                remove=True, environment={"CD4ML_MODEL_DIR": MODEL_DIR},
                network_mode="none", read_only=True, tmpfs={"/tmp": "size=256m"}, mem_limit=memory,
                volumes={tmp: {"bind": "/in", "mode": "ro"}, str(out): {"bind": "/out", "mode": "rw"}},
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
