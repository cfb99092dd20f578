"""MLflow for the benchmarks: one virtualenv, made on first use, with the host's versions of
the ML stack so that both servers load the very same model (shared by bench_serve and
bench_image; the host's own packages are never touched)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VENV = Path(os.environ.get("CD4ML_CACHE_DIR") or Path.home() / ".cache" / "cd4ml") / "bench-mlflow"
HOST_PINS = ("numpy", "scipy", "scikit-learn", "pandas")


def mlflow_python() -> Path:
    """The MLflow virtualenv's python, made once with the host's versions of the ML stack."""
    import importlib.metadata as md

    py = VENV / "bin" / "python"
    if not py.exists():
        print(f"making {VENV} (pip install mlflow, once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pins = [f"{d}=={md.version(d)}" for d in HOST_PINS]
        subprocess.run([str(py), "-m", "pip", "install", "-q", "mlflow", *pins], check=True)
    return py
