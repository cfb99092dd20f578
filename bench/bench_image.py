"""cd4ml's model image against the one `mlflow models generate-dockerfile` gives, same model.

Prints, for each: bytes added over the (same) base image (target: cd4ml <= 1/3 of MLflow's),
cold build time with no layer cache (target: cd4ml faster), and the rebuild after a retrain that
changed only the model (target: cd4ml < 5 s, built with network_mode="none" to prove that
nothing is downloaded).

MLflow runs from its own virtualenv (~/.cache/cd4ml/bench-mlflow, made on first use with the
host's numpy/scipy/scikit-learn/pandas pins) so that installing it never changes this machine's
packages. Its generated Dockerfile is built exactly as generated except for what this offline
machine forces, all printed below: (1) FROM python:3.11.7-slim becomes the local base image
(Docker Hub is unreachable; ours uses the same one), (2) where pip must trust a TLS proxy (CI,
or CD4ML_BUILD_CA_BUNDLE), the CA bundle is COPYed in and PIP_CERT set right after FROM, as
cd4ml's own build does, (3) the build runs with host networking, as ours does.

Run: python bench/bench_image.py   (needs the Docker engine: scripts/docker-up.sh)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow_env import mlflow_python

ROOT = Path(__file__).resolve().parent.parent
SAVE_MLFLOW_MODEL = """
import pickle, sys
import mlflow.sklearn
with open(sys.argv[1], "rb") as f:
    model = pickle.load(f)
# cloudpickle: MLflow 3's default (skops) refuses scikit-learn's tree objects without review
mlflow.sklearn.save_model(model, sys.argv[2], serialization_format="cloudpickle")
"""


def docker_build(c, directory: Path, tag: str, nocache: bool, network: str) -> float:
    t0 = time.perf_counter()
    for chunk in c.api.build(path=str(directory), tag=tag, rm=True, forcerm=True, pull=False,
                             nocache=nocache, network_mode=network, decode=True):
        if "error" in chunk:
            raise RuntimeError(f"{tag}: {chunk['error'].strip()}")
    return time.perf_counter() - t0


def patch_mlflow_dockerfile(path: Path, base: str, ca: Path | None) -> list[str]:
    """The changes this machine forces, applied and described."""
    text = path.read_text()
    changes = []
    m = re.search(r"^FROM (\S+)$", text, re.MULTILINE)
    assert m, "no FROM line in MLflow's Dockerfile"
    text = text.replace(m.group(0), f"FROM {base}", 1)
    changes.append(f"FROM {m.group(1)} -> FROM {base} (no Docker Hub here; the same base as cd4ml)")
    if ca is not None:
        shutil.copyfile(ca, path.parent / "ca-bundle.crt")
        text = text.replace(f"FROM {base}\n", f"FROM {base}\nCOPY ca-bundle.crt /etc/ssl/certs/"
                            "bench-ca.crt\nENV PIP_CERT=/etc/ssl/certs/bench-ca.crt\n", 1)
        changes.append("+ COPY ca-bundle.crt, ENV PIP_CERT after FROM (pip behind a TLS proxy)")
    changes.append("built with network_mode=host, pull=False (as cd4ml's build)")
    path.write_text(text)
    return changes


def main() -> int:
    from cd4ml.integrations.docker import client, image_size
    from cd4ml.release import dockerfile
    from cd4ml.release.build import build
    from cd4ml.spec import load_spec
    from cd4ml.stages.train import train
    from cd4ml.store import Store

    work = Path(tempfile.mkdtemp(prefix="cd4ml-bench-image-"))
    os.environ["CD4ML_ARTIFACTS"] = str(work / "artifacts")
    c = client()
    spec = load_spec(ROOT / "pipelines" / "wine.yaml")
    base = dockerfile.base_image(spec)
    base_size = image_size(c, base)
    if base_size is None:
        print(f"base image {base} missing: run scripts/docker-up.sh", file=sys.stderr)
        return 2
    ca = dockerfile.ca_bundle()
    figures: dict = {"base_image": base, "base_bytes": base_size}
    try:
        store = Store(f"sqlite:///{work / 'store.db'}")
        models = []
        for seed in (1, 2):
            s = dataclasses.replace(spec, model=dataclasses.replace(spec.model, seed=seed))
            run = store.start_run(spec.name)
            mv = train(s, store, run.id).model
            store.record_gate(run.id, mv.id, True, [], None)
            models.append(store.model_by_id(mv.id))

        # ---- cd4ml
        cold = build(spec, store, models[0], nocache=True)
        warm = build(spec, store, models[1], network_mode="none")
        figures["cd4ml"] = {"added_bytes": cold.added_bytes, "cold_build_s": cold.build_seconds,
                            "model_only_rebuild_s": warm.build_seconds,
                            "model_only_rebuild_network": "none",
                            "infra_validation_s": cold.infra.seconds, "infra_passed": cold.passed,
                            "cached_steps": f"{warm.cached_steps}/{warm.steps}"}

        # ---- MLflow
        try:
            py = mlflow_python()
            out = work / "mlflow"
            subprocess.run([str(py), "-c", SAVE_MLFLOW_MODEL, str(Path(models[0].artifact_uri) / "model.pkl"),
                            str(work / "v1" / "model")], check=True, capture_output=True)
            # the generated Dockerfile COPYs model_dir/<the model directory's name>
            subprocess.run([str(py.parent / "mlflow"), "models", "generate-dockerfile", "-m",
                            str(work / "v1" / "model"), "-d", str(out)], check=True,
                           capture_output=True)
            changes = patch_mlflow_dockerfile(out / "Dockerfile", base, ca)
            tag = "cd4ml-bench/mlflow-wine:1"
            ml_cold = docker_build(c, out, tag, nocache=True, network="host")
            ml_size = image_size(c, tag) or 0
            # a retrain: only the model directory changes
            shutil.rmtree(out / "model_dir" / "model")
            subprocess.run([str(py), "-c", SAVE_MLFLOW_MODEL, str(Path(models[1].artifact_uri) / "model.pkl"),
                            str(out / "model_dir" / "model")], check=True, capture_output=True)
            try:
                ml_warm, net = docker_build(c, out, "cd4ml-bench/mlflow-wine:2", False, "none"), "none"
            except RuntimeError:  # its model layer is followed by a pip step that needs network
                ml_warm, net = docker_build(c, out, "cd4ml-bench/mlflow-wine:2", False, "host"), "host"
            figures["mlflow"] = {"added_bytes": ml_size - base_size, "cold_build_s": ml_cold,
                                 "model_only_rebuild_s": ml_warm, "model_only_rebuild_network": net,
                                 "dockerfile_changes": changes}
        except (subprocess.CalledProcessError, RuntimeError, OSError) as e:
            detail = getattr(e, "stderr", b"") or b""
            figures["mlflow"] = {"error": f"{e} {detail.decode(errors='replace')[-500:] if detail else ''}"}
        report(figures)
        (ROOT / "bench" / "out").mkdir(exist_ok=True)
        (ROOT / "bench" / "out" / "bench_image.json").write_text(json.dumps(figures, indent=2))
        for tag in ("cd4ml-bench/mlflow-wine:1", "cd4ml-bench/mlflow-wine:2"):
            try:
                c.images.remove(tag, force=True)
            except Exception as e:  # noqa: BLE001 - it may not have been built
                print(f"(not removed: {tag}: {type(e).__name__})", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(f: dict) -> None:
    ours, theirs = f["cd4ml"], f.get("mlflow", {})
    print(f"model: wine (RandomForest, 100 trees); base image {f['base_image']} "
          f"({f['base_bytes'] / 1e6:.0f} MB)")
    if "error" in theirs:
        print(f"MLflow's image could not be built here: {theirs['error']}")
        theirs = {}
    else:
        print("MLflow Dockerfile changes forced by this machine:")
        for ch in theirs["dockerfile_changes"]:
            print(f"  - {ch}")
    print(f"{'measure':<34} {'cd4ml':>10} {'MLflow':>10}  target          verdict")

    def row(name: str, key: str, unit: str, scale: float, target: str, ok) -> None:
        a = ours[key] / scale
        b = theirs.get(key)
        bs = f"{b / scale:10.1f}" if b is not None else f"{'-':>10}"
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name + ' (' + unit + ')':<34} {a:10.1f} {bs}  {target:<15} {verdict}")

    ml_added = theirs.get("added_bytes")
    row("added over base", "added_bytes", "MB", 1e6, "<= 1/3 MLflow",
        ours["added_bytes"] * 3 <= ml_added if ml_added else None)
    ml_cold = theirs.get("cold_build_s")
    row("cold build, no cache", "cold_build_s", "s", 1, "faster", ours["cold_build_s"] < ml_cold
        if ml_cold else None)
    row("model-only rebuild", "model_only_rebuild_s", "s", 1, "< 5 s",
        ours["model_only_rebuild_s"] < 5)
    net = theirs.get("model_only_rebuild_network")
    print(f"model-only rebuild network: cd4ml {ours['model_only_rebuild_network']}"
          + (f", MLflow {net}" if net else "")
          + f"; cd4ml layers cached {ours['cached_steps']}; cd4ml infra validation "
          f"{ours['infra_validation_s']:.1f} s ({'passed' if ours['infra_passed'] else 'FAILED'})")


if __name__ == "__main__":
    sys.exit(main())
