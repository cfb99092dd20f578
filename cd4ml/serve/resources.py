"""How many worker processes, and how many threads each numeric library may use.

The server handles requests on threads and scales with worker processes; a model that also
starts a pool of OpenMP/BLAS threads per call (HistGradientBoosting does, on every core)
makes those pools fight each other and the GIL under concurrent requests. So by default each
worker gets an equal share of the CPUs the container may use, and each library pool that share.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

#: the variables numpy's BLAS and scikit-learn's OpenMP read when they first load
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may run on: its affinity, capped by a cgroup v2 quota (``cpu.max``,
    what ``docker run --cpus`` and Kubernetes limits set), rounded up; at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: the affinity is the limit
    return max(1, cpus)


def choose_workers(value: str | None, cpus: int | None = None) -> int:
    """``--workers``/``CD4ML_WORKERS``: a positive count, or ``auto``/unset for one per CPU.

    Raises ``ValueError`` with a one-line reason for anything else."""
    if value is None or value.strip().lower() in ("", "auto"):
        return cpus if cpus is not None else available_cpus()
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"workers {value!r} is not a positive whole number or 'auto'")
    return n


def thread_budget(workers: int, environ: Mapping[str, str] = os.environ,
                  cpus: int | None = None) -> int:
    """Threads one worker's numeric libraries may use: ``OMP_NUM_THREADS`` when the operator
    set it, else an equal share of the CPUs (1 with one worker per CPU, the default)."""
    given = environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, (cpus if cpus is not None else available_cpus()) // max(1, workers))


def limit_threads(threads: int, environ: dict | os._Environ = os.environ) -> None:
    """Set the thread variables not set already; effective for libraries not yet loaded."""
    for name in THREAD_VARIABLES:
        if not environ.get(name):
            environ[name] = str(threads)


def limit_loaded_pools(threads: int) -> None:
    """Cap the pools of libraries loaded already (scikit-learn's OpenMP is loaded with the
    model), for servers started in a process that imported numpy before (``cd4ml serve``)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; a runtime without scikit-learn has no pools
        return
    threadpool_limits(limits=threads)
