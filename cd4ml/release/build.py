"""The build stage: a blessed model version becomes an infra-validated (and pushed) image.

Only a blessed model is built. The image is built by the Docker engine from the rendered
Dockerfile (see :mod:`cd4ml.release.dockerfile`), recorded against the model version, then infra
validated (:mod:`cd4ml.release.infraval`); the verdict is recorded too, and an image whose validation
failed is never pushed and can never be deployed. A push records the registry's digest.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import BuildError
from cd4ml.events import ImageBuilt, StageFailed, StageFinished, StageProgress, StageStarted, emit
from cd4ml.spec import Runtime
from cd4ml.states import InfraStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    import docker

    from cd4ml.release.dockerfile import Context
    from cd4ml.release.infraval import InfraReport
    from cd4ml.release.registry import Credentials
    from cd4ml.serve.compiled import Tolerance
    from cd4ml.spec import Spec
    from cd4ml.store import Image, ModelVersion, Run, Store

log = logging.getLogger("cd4ml.release.build")
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_NO_REGISTRY = ("{path}: image.registry is not set; add it (e.g. registry.example.com or "
                "127.0.0.1:5000) to push")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NOISE = re.compile(r"^\s*(---> |Removing intermediate container|Successfully )")


@dataclass(frozen=True)
class BuildResult:
    """A built image, its infra validation and, when pushed, its registry digest."""

    pipeline: str
    model_version: int
    image_id: str
    reference: str
    base_image: str
    size_bytes: int
    added_bytes: int  # over the base image: what this image really costs
    infra: InfraReport
    digest: str | None
    seconds: float  # everything: context, build, validation, push
    build_seconds: float  # the engine's build alone
    steps: int
    cached_steps: int
    requirements: tuple[str, ...]
    record_id: int  # the store's images row
    runtime: Runtime = Runtime.SKLEARN  # what serves the model in the image
    runtime_reason: str = ""  # why (the compile stage's verdict)
    compile_seconds: float = 0.0  # the compile stage's share of build_seconds

    @property
    def passed(self) -> bool:
        return self.infra.passed


@dataclass(frozen=True)
class PushResult:
    reference: str
    digest: str
    pushed_at: str


def image_reference(spec: Spec, model: ModelVersion) -> str:
    """``[registry/]repository:version``."""
    registry = f"{spec.image.registry.rstrip('/')}/" if spec.image.registry else ""
    return f"{registry}{spec.image.repository}:{model.version}"


def check_buildable(spec: Spec, model: ModelVersion) -> None:
    """Refuse a model that is not the spec's, not blessed, or marked bad."""
    if model.pipeline != spec.name:
        raise BuildError(f"{model.ref} belongs to pipeline {model.pipeline!r}, not {spec.name!r}; "
                         "pass the matching --pipeline")
    if model.bad:
        raise BuildError(f"{model.ref} is marked bad; build a newer blessed version")
    if not model.blessed:
        raise BuildError(f"{model.ref} is not blessed (its gate did not pass); only blessed "
                         "models are built. Fix the gate failures or override the gate with a reason")


def check_provenance(spec: Spec, model: ModelVersion, run: Run) -> None:
    """Refuse a model whose training run the spec's ``provenance:`` does not accept: a model
    logged from a laptop, or blessed on a pull request's branch, never reaches an image of a
    repository that asks for CI-trained models of its default branch."""
    from cd4ml.spec import Provenance

    if spec.provenance is Provenance.ANY:
        return
    tags = run.tags or {}
    where = f"{spec.path}:{spec.line_of('provenance')}: provenance: {spec.provenance}"
    if not tags.get("ci.run_id"):
        raise BuildError(f"{model.ref} was trained outside CI (run {run.id}, by "
                         f"{run.actor or 'unknown'}), but {where} asks for a CI run; train it "
                         "in the workflow")
    default = tags.get("ci.default_branch")
    if spec.provenance is Provenance.CI_DEFAULT_BRANCH and (
            not default or tags.get("ci.ref") != f"refs/heads/{default}"):
        raise BuildError(f"{model.ref} was trained by CI run {tags['ci.run_id']} of "
                         f"{tags.get('ci.ref') or 'an unknown ref'}, but {where} asks for the "
                         f"default branch ({default or 'unknown'}); merge, then build the "
                         "version main trains")


def build(spec: Spec, store: Store, model: ModelVersion, push: bool = False, *,
          nocache: bool = False, network_mode: str = "host", ready_timeout: float = 60.0,
          latency_requests: int = 200, credentials: Credentials | None = None) -> BuildResult:
    """Build, record and infra-validate the image of ``model``; push it when asked and valid.

    ``network_mode`` is the build's network (``"host"`` where pip reaches its index only
    through the host's proxy settings; ``"none"`` proves that a rebuild installs nothing).
    """
    from cd4ml.integrations.docker import client

    check_buildable(spec, model)
    check_provenance(spec, model, store.run(model.run_id))
    if push and not spec.image.registry:
        raise BuildError(_NO_REGISTRY.format(path=spec.path))
    started = time.perf_counter()
    reference = image_reference(spec, model)
    c = client()
    try:
        return _build(c, spec, store, model, reference, push=push, nocache=nocache,
                      network_mode=network_mode, ready_timeout=ready_timeout,
                      latency_requests=latency_requests, credentials=credentials,
                      started=started)
    finally:
        c.close()


def _build(c: docker.DockerClient, spec: Spec, store: Store, model: ModelVersion, reference: str,
           *, push: bool, nocache: bool, network_mode: str, ready_timeout: float,
           latency_requests: int, credentials: Credentials | None, started: float) -> BuildResult:
    from cd4ml.integrations.docker import image_size
    from cd4ml.release import dockerfile

    base = dockerfile.base_image(spec)
    base_size = image_size(c, base)
    if base_size is None:
        raise BuildError(f"base image {base!r} is not present and builds never pull; run "
                         "scripts/docker-up.sh (or docker pull it, or set CD4ML_BASE_IMAGE)")
    git_commit, data_hash = _lineage(store, model)
    emit(StageStarted("build", f"building {reference}"))
    with tempfile.TemporaryDirectory(prefix="cd4ml-build-") as tmp:
        try:
            t0 = time.perf_counter()

            def context(kind: str, **kw: Any) -> Context:
                return dockerfile.make_context(
                    Path(tmp) / kind, spec, model, git_commit=git_commit, data_hash=data_hash,
                    ca=dockerfile.ca_bundle(), index_url=dockerfile.pip_index_url(), **kw)

            choice = Choice(Runtime.SKLEARN, "image.runtime: sklearn")
            if spec.image.runtime is not Runtime.SKLEARN:
                choice = _compile(c, spec, model, lambda: context("compiler", compiler=True),
                                  nocache, network_mode, Path(tmp))
            ctx = (context("onnx", compiled=Path(tmp) / "compiled")
                   if choice.runtime is Runtime.ONNX else context("sklearn"))
            image_id, steps, cached = _docker_build(c, ctx, reference, nocache, network_mode)
            build_seconds = time.perf_counter() - t0
        except Exception as e:
            emit(StageFailed("build", str(e).splitlines()[0] if str(e) else type(e).__name__))
            raise
        size = image_size(c, image_id) or 0
        record = store.record_image(model.id, image_id, reference, size)
        emit(StageFinished("build", f"{reference} {image_id[7:19]} {size / 1e6:.0f} MB "
                           f"(+{(size - base_size) / 1e6:.0f} MB), {cached}/{steps} steps "
                           f"cached, runtime {choice.runtime}"))
        report = _validate(c, spec, store, model, image_id, size, record.id, choice,
                           ready_timeout, latency_requests, Path(tmp) / "mounted")
    digest = None
    if push and report.passed:
        digest = _push(c, store, record.id, reference, credentials).digest
    result = BuildResult(
        pipeline=spec.name, model_version=model.version, image_id=image_id, reference=reference,
        base_image=base, size_bytes=size, added_bytes=size - base_size, infra=report,
        digest=digest, seconds=time.perf_counter() - started, build_seconds=build_seconds,
        steps=steps, cached_steps=cached, requirements=ctx.requirements.pins, record_id=record.id,
        runtime=choice.runtime, runtime_reason=choice.reason, compile_seconds=choice.seconds)
    # for reporters (the GitHub check run, the step summary): the whole outcome in one event
    emit(ImageBuilt("build", f"{reference}: infra validation "
                    f"{'passed' if report.passed else 'failed'}", result=result))
    return result


def _validate(c: docker.DockerClient, spec: Spec, store: Store, model: ModelVersion,
              image_id: str, size: int, record_id: int, choice: Choice, ready_timeout: float,
              latency_requests: int, model_dir: Path) -> InfraReport:
    """Infra-validate the image and record the verdict. An image serving the compiled model has
    no scikit-learn: its reference answers come from the compile stage's image, the model
    mounted from ``model_dir``."""
    from cd4ml.release import infraval

    reference = (choice.compiler, model_dir) if choice.compiler else None
    try:
        report = infraval.validate_image(c, spec, model, image_id, size,
                                         ready_timeout=ready_timeout,
                                         latency_requests=latency_requests,
                                         reference=reference, runtime=choice)
    except BaseException as e:
        # an image whose validation could not run is not "pending" forever: it failed
        store.update_image(record_id, infra_status=InfraStatus.FAILED,
                           infra_report={"passed": False, "error": str(e) or type(e).__name__})
        raise
    store.update_image(record_id, infra_status=InfraStatus.PASSED if report.passed else InfraStatus.FAILED,
                       infra_report=asdict(report))
    return report


@dataclass(frozen=True)
class Choice:
    """What will serve the model in the image, and why (the build's answer to image.runtime)."""

    runtime: Runtime
    reason: str
    tolerance: Tolerance | None = None  # the parity rule the compiled model was held to
    compiler: str | None = None  # the compile stage's image (scikit-learn's answers), when ONNX
    seconds: float = 0.0  # what the compile stage took


def _compile(c: docker.DockerClient, spec: Spec, model: ModelVersion,
             context: Callable[[], Context], nocache: bool, network_mode: str,
             tmp: Path) -> Choice:
    """Run the compile stage (:mod:`cd4ml.release.compile`): ONNX when conversion and parity
    pass; else scikit-learn under ``auto``, a BuildError under ``onnx``."""
    from cd4ml.release import compile as compile_stage
    from cd4ml.release.infraval import held_out
    from cd4ml.release.render import container_memory
    from cd4ml.serve.compiled import Tolerance

    emit(StageProgress("build", "compiling the model to ONNX and checking parity"))
    t0 = time.perf_counter()
    outcome = compile_stage.compile_in_image(
        c, context, compile_stage.compiler_tag(spec.image.repository),
        compile_stage.mountable(model, tmp / "mounted"), model.sha256, held_out(spec, model),
        tmp / "compiled", lambda ctx, tag: _docker_build(c, ctx, tag, nocache, network_mode)[0],
        memory=container_memory(spec))
    seconds = time.perf_counter() - t0
    if outcome.runtime == "onnx":
        emit(StageProgress("build", f"runtime onnx: {outcome.reason} (compile stage "
                                    f"{seconds:.1f} s)"))
        return Choice(Runtime.ONNX, outcome.reason, Tolerance(**outcome.report["tolerance"]),
                      outcome.compiler, seconds)
    if spec.image.runtime is Runtime.ONNX:
        raise BuildError(f"{spec.path}:{spec.line_of('image', 'runtime')}: image.runtime: onnx, "
                         f"but the model cannot be served compiled: {outcome.reason}; set "
                         "image.runtime: auto (scikit-learn when it cannot) or sklearn")
    emit(StageProgress("build", f"runtime sklearn: {outcome.reason}"))
    return Choice(Runtime.SKLEARN, f"not compiled: {outcome.reason}", seconds=seconds)


def push(spec: Spec, store: Store, model: ModelVersion,
         credentials: Credentials | None = None) -> PushResult:
    """Push the newest infra-validated image of ``model`` to the spec's registry."""
    from docker.errors import ImageNotFound

    from cd4ml.integrations.docker import client, translating

    if not spec.image.registry:
        raise BuildError(_NO_REGISTRY.format(path=spec.path))
    image = validated_image(store, model)
    reference = image_reference(spec, model)
    c = client()
    try:
        try:
            local = c.images.get(image.image_id)
        except ImageNotFound:
            raise BuildError(f"image {image.image_id[:19]} of {model.ref} is not in this Docker "
                             f"engine; rebuild it with 'cd4ml build {model.version} --push'") from None
        if reference not in local.tags:
            repository, tag = reference.rsplit(":", 1)
            with translating(BuildError, f"tag {image.image_id[:19]} as {reference}"):
                local.tag(repository, tag)
            store.update_image(image.id, reference=reference)
        return _push(c, store, image.id, reference, credentials)
    finally:
        c.close()


def validated_image(store: Store, model: ModelVersion) -> Image:
    """The newest image of ``model`` that passed infra validation."""
    images = store.images_for(model.id)
    for image in images:
        if image.infra_status is InfraStatus.PASSED:
            return image
    if images:
        raise BuildError(f"no image of {model.ref} passed infra validation (newest: "
                         f"{images[0].infra_status}); fix it and rebuild with 'cd4ml build'")
    raise BuildError(f"{model.ref} has no image; build it first with 'cd4ml build {model.version}'")


def _push(c: docker.DockerClient, store: Store, record_id: int, reference: str,
          credentials: Credentials | None) -> PushResult:
    from cd4ml.release import registry
    from cd4ml.store import now

    creds = credentials if credentials is not None else registry.credentials_from_env()
    emit(StageStarted("push", f"pushing {reference}"))
    try:
        digest = registry.push(c, reference, creds)
    except BuildError as e:
        emit(StageFailed("push", str(e)))
        raise
    pushed_at = now()
    store.update_image(record_id, digest=digest, pushed_at=pushed_at)
    emit(StageFinished("push", f"{reference}@{digest}"))
    return PushResult(reference, digest, pushed_at)


def _lineage(store: Store, model: ModelVersion) -> tuple[str | None, str | None]:
    """The git commit and data hash the model came from: its artifact's record, else its run's."""
    from cd4ml import artifacts
    from cd4ml.errors import StoreError

    commit = data_hash = None
    try:
        meta = artifacts.read_meta(model.artifact_uri)
        commit, data_hash = meta.git_commit, meta.data_hash
    except artifacts.ArtifactMismatch:
        pass
    if not (commit and data_hash):
        try:
            run = store.run(model.run_id)
            commit, data_hash = commit or run.git_commit, data_hash or run.data_hash
        except StoreError:
            pass
    return commit, data_hash


def _docker_build(c: docker.DockerClient, ctx: Context, reference: str, nocache: bool,
                  network_mode: str) -> tuple[str, int, int]:
    """Run the engine's build, streaming one progress event per step; return the image id,
    the number of steps and how many of them came from the layer cache."""
    from cd4ml.integrations.docker import translating

    steps = cached = 0
    current = ""
    recent: list[str] = []
    image_id = None
    with translating(BuildError, f"build {reference}", "check the Docker engine's log"):
        stream = c.api.build(
            path=str(ctx.directory), tag=reference, rm=True, forcerm=True, pull=False,
            nocache=nocache, network_mode=network_mode, decode=True,
            buildargs=ctx.buildargs or None)
        for chunk in stream:
            if "error" in chunk:
                raise BuildError(_failure(reference, current, chunk["error"], recent))
            if chunk.get("aux", {}).get("ID"):
                image_id = chunk["aux"]["ID"]
            for line in _ANSI.sub("", chunk.get("stream", "")).splitlines():
                log.debug("%s", line)
                m = _STEP.match(line)
                if m:
                    steps = int(m.group(2))
                    current = f"step {m.group(1)}/{m.group(2)} ({m.group(3)[:60]})"
                    step = " ".join(m.group(3).split())
                    emit(StageProgress("build", f"[{m.group(1)}/{m.group(2)}] {step[:100]}"))
                elif line.strip() == "---> Using cache":
                    cached += 1
                elif line.strip() and not _NOISE.match(line):
                    recent = (recent + [line.strip()])[-20:]
    if image_id is None:
        raise BuildError(f"docker build of {reference} reported no image id; see the engine's log")
    return image_id, steps, cached


def _failure(reference: str, step: str, error: str, recent: list[str]) -> str:
    """One line: the step, the exit code, the last thing the step said, and a fix."""
    code = re.search(r"returned a non-zero code: (\d+)", error)
    what = f"exit code {code.group(1)}" if code else error.strip().splitlines()[0][:200]
    last = next((ln for ln in reversed(recent) if ln.startswith(("ERROR", "error"))), None)
    last = last or (recent[-1] if recent else "")
    fix = "rerun with --debug for the whole build output"
    if any("CERTIFICATE_VERIFY_FAILED" in ln or "SSLError" in ln for ln in recent):
        fix = ("pip inside the build does not trust this network's TLS proxy: set "
               "CD4ML_BUILD_CA_BUNDLE to the CA bundle pip uses here (e.g. "
               "/etc/ssl/certs/ca-certificates.crt)")
    elif any("No matching distribution" in ln for ln in recent):
        fix = ("the pinned version is not on the build's package index: set PIP_INDEX_URL, or "
               "pick a base image with the same Python as this machine")
    return (f"docker build of {reference} failed at {step or 'start'}: {what}"
            + (f": {last[:200]}" if last else "") + f"; {fix}")
