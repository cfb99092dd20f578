"""The plain containers cd4ml runs itself on every Docker target (model servers, the front, a
Swarm pre-flight or bridge): waiting until one is ready, and removing one."""

from __future__ import annotations

import time
from typing import Any

from cd4ml.release.targets import NotHealthy, http_get


def wait_ready(ctr: Any, image: str, port: int, path: str, timeout: float) -> None:
    """Wait until ``ctr`` answers 200 on ``path`` at its port published on 127.0.0.1; raise
    NotHealthy at the timeout, or at once when the server exits (or restarts) on start."""
    from cd4ml.integrations.docker import logs_tail

    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        ctr.reload()
        state = ctr.attrs.get("State") or {}
        if state.get("Status") in ("exited", "dead") or state.get("Restarting") \
                or int(ctr.attrs.get("RestartCount") or 0) > 0:
            logs = logs_tail(ctr)
            raise NotHealthy(f"{ctr.name} ({image}) exited on start (code {state.get('ExitCode')}): "
                             f"{last_line(logs)}", restored=False,
                             details={"container": ctr.name, "logs": logs})
        ports = (ctr.attrs.get("NetworkSettings") or {}).get("Ports") or {}
        binding = (ports.get(f"{port}/tcp") or [None])[0]
        if binding:
            status, _ = http_get(f"http://127.0.0.1:{binding['HostPort']}{path}", timeout=1)
            if status == 200:
                return
            last = f"{path} answered HTTP {status}" if status else f"{path} did not answer"
        time.sleep(0.1)
    raise NotHealthy(f"{ctr.name} ({image}) was not ready within {timeout:g} s: {last}",
                     restored=False, details={"container": ctr.name, "logs": logs_tail(ctr)})


def remove(ctr: Any) -> None:
    from docker.errors import NotFound

    try:
        ctr.remove(force=True)
    except NotFound:
        pass


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"
