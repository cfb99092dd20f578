"""Infra validation: run the built image as it would run in production and hold it to account.

Like TFX's InfraValidator, an image is not deployable because it built, but because a container
of it, started cold, became ready, answered the held-out rows with exactly the predictions the
model itself gives (computed in a second, network-less container of the image, never by
unpickling on the build host), refused a malformed request with 422, stayed within the spec's p99
latency and size budgets, and reported the model it was built with. The container runs with a
read-only root file system, published on a free loopback port only, and is always removed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.events import StageFailed, StageFinished, StageStarted, emit
from cd4ml.release.compile import model_volume
from cd4ml.release.dockerfile import MODEL_DIR, PORT
from cd4ml.release.render import container_memory

if TYPE_CHECKING:
    import docker

    from cd4ml.release.build import Choice
    from cd4ml.serve.compiled import Tolerance
    from cd4ml.spec import Spec
    from cd4ml.store import ModelVersion

log = logging.getLogger("cd4ml.release.infraval")
BATCH = 500  # rows per /predict request when replaying the held-out rows
MB = 1_000_000  # sizes in decimal megabytes, as `docker images` shows them


@dataclass(frozen=True)
class Check:
    name: str  # ready | identity | predictions | malformed | latency | size | runtime
    passed: bool
    observed: Any
    limit: Any
    detail: str


@dataclass(frozen=True)
class InfraReport:
    passed: bool
    checks: tuple[Check, ...]
    test_rows: int
    p99_ms: float | None
    ready_seconds: float | None
    seconds: float

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


def validate_image(c: docker.DockerClient, spec: Spec, model: ModelVersion, image: str,
                   size_bytes: int, *, ready_timeout: float = 60.0,
                   latency_requests: int = 200, reference: tuple[str, Path] | None = None,
                   runtime: Choice | None = None) -> InfraReport:
    """Start ``image``, run every check, remove the container. Never raises for a failed check:
    the verdict is the report's ``passed`` (recorded by the caller).

    ``reference``: where scikit-learn's own answers are computed when the image has no
    scikit-learn (it serves the compiled model): an image with it, and the model's folder to
    mount into it (:mod:`cd4ml.release.compile`'s image); ``runtime``: the build's choice, recorded as a check,
    whose tolerance the served answers are held to (scikit-learn's answers: exactly)."""
    from cd4ml.errors import BuildError
    from cd4ml.integrations.docker import logs_tail, published_port, translating
    from cd4ml.serve.compiled import Tolerance

    started = time.perf_counter()
    emit(StageStarted("infra", f"validating {image[:19]}"))
    checks: list[Check] = []
    tolerance = runtime.tolerance if runtime and runtime.tolerance else Tolerance(0.0, 0.0)
    rows = held_out(spec, model)
    p99 = ready_s = None
    name = f"cd4ml-infraval-{spec.name}-{model.version}-{uuid.uuid4().hex[:6]}"
    container = None
    try:
        with translating(BuildError, f"start {image[:19]} for infra validation"):
            container = c.containers.run(
                image, detach=True, name=name, read_only=True, tmpfs={"/tmp": "size=64m"},
                mem_limit=container_memory(spec),
                ports={f"{PORT}/tcp": ("127.0.0.1", None)},
                labels={"cd4ml.role": "infra-validation", "cd4ml.project": spec.project,
                        "cd4ml.pipeline": spec.name})
            url = f"http://127.0.0.1:{published_port(container, f'{PORT}/tcp')}"
        ready_s, why = _wait_ready(container, url, ready_timeout)
        checks.append(Check("ready", ready_s is not None, ready_s, ready_timeout,
                            why or f"ready after {ready_s:.1f} s"))
        if ready_s is None:
            tail = logs_tail(container).splitlines()[-1:] if container else []
            if tail:
                checks[-1] = Check("ready", False, None, ready_timeout, f"{why}: {tail[0][:300]}")
        else:
            checks.append(_identity(url, model))
            expected, load_error = _reference(c, reference[0] if reference else image, rows,
                                              container_memory(spec), model.sha256,
                                              reference[1] if reference else None)
            checks.append(_predictions(url, rows, expected, load_error, tolerance))
            checks.append(_malformed(url))
            latency, p99 = _latency(url, rows, latency_requests, spec.image.max_p99_ms)
            checks.append(latency)
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except Exception as e:  # noqa: BLE001 - a container already gone is the goal reached
                log.debug("removing %s: %s", name, e)
    limit = spec.image.max_size_mb
    size_mb = size_bytes / MB
    checks.append(Check("size", limit is None or size_mb <= limit, round(size_mb, 1), limit,
                        f"{size_mb:.0f} MB" + (f" (budget {limit:g} MB)" if limit else "")))
    if runtime is not None:
        # what serves the model, why, and the rule its answers were held to: recorded with the image
        checks.append(Check("runtime", True, str(runtime.runtime), str(spec.image.runtime),
                            runtime.reason + (f"; parity: {tolerance}" if runtime.tolerance else "")))
    report = InfraReport(passed=all(ch.passed for ch in checks), checks=tuple(checks),
                         test_rows=len(rows), p99_ms=p99, ready_seconds=ready_s,
                         seconds=time.perf_counter() - started)
    failed = ", ".join(ch.name for ch in report.failures)
    emit(StageFinished("infra", "passed") if report.passed else
         StageFailed("infra", f"failed: {failed}"))
    return report


# ---------------------------------------------------------------------------------- the checks


def held_out(spec: Spec, model: ModelVersion) -> list[dict]:
    """The held-out rows, features only, as JSON records."""
    from cd4ml.stages.data import load_frame, split

    frame = load_frame(spec.data)
    test = frame.iloc[split(spec, frame).test_index]
    names = [f["name"] for f in model.signature.get("inputs", [])]
    return [{k: _native(v) for k, v in r.items()} for r in test[names].to_dict("records")]


def _reference(c: docker.DockerClient, image: str, rows: list[dict], memory: int,
               sha256: str, model_dir: Path | None = None) -> tuple[dict | None, str | None]:
    """The model's own predictions on ``rows``, computed by ``cd4ml.serve.reference`` in a
    throwaway container of ``image`` (its unprivileged user, no network, read-only root), on
    its own model or the one of ``model_dir``, which must be ``sha256``: the build host never
    unpickles a model."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cd4ml-infraval-") as tmp:
        os.chmod(tmp, 0o755)  # the image's user is not the host's
        (Path(tmp) / "rows.json").write_text(json.dumps({"instances": rows}))
        os.chmod(Path(tmp) / "rows.json", 0o644)
        try:
            out = c.containers.run(
                image, ["python", "-m", "cd4ml.serve.reference", "/in/rows.json"], remove=True,
                environment={"CD4ML_MODEL_DIR": MODEL_DIR, "CD4ML_MODEL_SHA256": sha256},
                network_mode="none", read_only=True, tmpfs={"/tmp": "size=64m"}, mem_limit=memory,
                volumes={tmp: {"bind": "/in", "mode": "ro"}, **(model_volume(model_dir) if model_dir else {})},
                stdout=True, stderr=False,
                labels={"cd4ml.role": "infra-validation"})
        except Exception as e:  # noqa: BLE001 -- ContainerError carries the refusal; any is a failed check
            return None, str(e).splitlines()[0][:300]
    try:
        doc = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, f"no answer from cd4ml.serve.reference: {out[-200:]!r}"
    if "predictions" not in doc:
        return None, str(doc.get("error"))
    return doc, None


def _native(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _request(url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None


def _wait_ready(container: Any, url: str, timeout: float) -> tuple[float | None, str]:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        container.reload()
        if container.status in ("exited", "dead"):
            code = container.attrs.get("State", {}).get("ExitCode")
            return None, f"the server exited (code {code}) before it was ready"
        try:
            status, _ = _request(f"{url}/ready", timeout=2)
            if status == 200:
                return time.perf_counter() - t0, ""
        except (OSError, ValueError):
            pass  # not listening yet
        time.sleep(0.2)
    return None, f"not ready within {timeout:g} s"


def _identity(url: str, model: ModelVersion) -> Check:
    status, meta = _request(f"{url}/metadata")
    served = _find(meta, "sha256") if status == 200 else None
    ok = served == model.sha256
    return Check("identity", ok, (served or "")[:12], model.sha256[:12],
                 "serves the recorded model" if ok else
                 f"/metadata answered {status} with sha256 {served!r}, not the recorded one")


def _find(doc: Any, key: str) -> Any:
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        for v in doc.values():
            found = _find(v, key)
            if found is not None:
                return found
    return None


def _predictions(url: str, rows: list[dict], expected: dict | None, load_error: str | None,
                 tolerance: Tolerance) -> Check:
    from cd4ml.serve.compiled import compare

    if expected is None:
        return Check("predictions", False, None, len(rows),
                     f"the model's own predictions could not be had in the image: {load_error}")
    served: list = []
    proba: list | None = []
    for i in range(0, len(rows), BATCH):
        status, body = _request(f"{url}/predict", {"instances": rows[i:i + BATCH]}, timeout=30)
        if status != 200 or not isinstance(body, dict) or "predictions" not in body:
            return Check("predictions", False, len(served), len(rows),
                         f"/predict answered {status}: {str(body)[:200]}")
        served.extend(body["predictions"])
        if proba is not None and isinstance(body.get("probabilities"), list):
            proba.extend(list(p.values()) for p in body["probabilities"])
        else:
            proba = None
    want_proba = expected.get("probabilities")
    exact = tolerance.rtol == 0 and tolerance.atol == 0
    parity = compare(expected["predictions"], served, want_proba,
                     proba if want_proba is not None else None,
                     classifier=model_is_classifier(expected), tolerance=tolerance)
    rule = "equal to" if exact else f"within the parity rule ({tolerance}) of"
    if not parity.passed:
        return Check("predictions", False, None, len(rows),
                     f"held-out answers are not {rule} the in-process model's: {parity.first}")
    return Check("predictions", True, len(rows), len(rows),
                 f"{len(rows)} held-out rows, all {rule} the in-process predictions"
                 + ("" if exact else f" (largest difference {parity.max_abs_diff:.2g})"))


def model_is_classifier(reference: dict) -> bool:
    """Labels are compared as labels (no tolerance) unless the reference said regression."""
    return reference.get("task", "classification") == "classification"


def _malformed(url: str) -> Check:
    status, _ = _request(f"{url}/predict", {"instances": [{"__cd4ml_not_a_feature__": 1}]})
    return Check("malformed", status == 422, status, 422,
                 "a malformed request is refused with 422" if status == 422 else
                 f"a malformed request got {status}, not 422")


def _latency(url: str, rows: list[dict], n: int, budget: float | None) -> tuple[Check, float | None]:
    if not rows or n <= 0:
        return Check("latency", budget is None, None, budget, "no rows to time"), None
    _request(f"{url}/predict", {"instances": [rows[0]]})  # warm-up, not timed
    timings = []
    for i in range(n):
        t0 = time.perf_counter()
        status, _ = _request(f"{url}/predict", {"instances": [rows[i % len(rows)]]})
        timings.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            return Check("latency", False, None, budget, f"request {i} answered {status}"), None
    timings.sort()
    p99 = timings[max(0, math.ceil(0.99 * len(timings)) - 1)]  # nearest rank
    ok = budget is None or p99 <= budget
    return Check("latency", ok, round(p99, 2), budget,
                 f"p99 {p99:.1f} ms over {n} single-row requests"
                 + (f" (budget {budget:g} ms)" if budget else "")), p99
