"""cd4ml: continuous delivery for machine learning, driven from CI.

The public tracking API (``start_run``) is imported lazily so that ``import cd4ml`` and
``cd4ml --help`` stay fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "start_run"]


def __getattr__(name: str):
    if name == "start_run":
        from cd4ml.stages.tracking import start_run

        return start_run
    raise AttributeError(f"module 'cd4ml' has no attribute {name!r}")
