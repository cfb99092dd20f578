"""The GitHub Deployments listener: deployment events mirrored as GitHub Deployments.

A listener of :mod:`cd4ml.events` like the console, so GitHub shows what the terminal shows:
a deployment created in_progress when one starts (its payload names the model version, the
image digest, the approvers and any policy override), success or failure when it ends, and
the environment's deployments marked inactive when it is taken down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def github_listener(reporter: Any) -> Callable[[Any], None]:
    """An event listener that mirrors deployments through ``reporter``
    (cd4ml.integrations.github.GitHubReporter)."""
    ids: dict[int, int | None] = {}

    def listen(e: Any) -> None:
        d = e.data
        if e.kind == "deployment_started":
            ids[d["deployment_id"]] = reporter.deployment_started(
                d["environment"], d["pipeline"], d["version"], d.get("image"), d.get("digest"),
                ref=d.get("git_commit"), description=e.message, override=d.get("override"))
        elif e.kind in ("deployed", "deployment_failed") and d.get("deployment_id") in ids:
            state = "success" if e.kind == "deployed" else "failure"
            reporter.deployment_finished(ids.pop(d["deployment_id"]), state, d.get("url"),
                                         description=e.message[:140])
        elif e.kind == "taken_down":
            reporter.deployment_replaced(d["environment"], d["pipeline"])

    return listen
