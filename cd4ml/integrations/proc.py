"""The one place cd4ml runs external commands (git aside): logged, with errors that say what ran."""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Sequence

from cd4ml.errors import CommandError

log = logging.getLogger("cd4ml.integrations.proc")


def call(argv: Sequence[str], *, input: str | None = None, timeout: float = 600,
         check: bool = True, env: dict[str, str] | None = None,
         cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; raise :class:`CommandError` with the exit code and stderr tail on failure."""
    argv = list(argv)
    log.info("$ %s", shlex.join(argv))
    try:
        out = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                             env=env, cwd=cwd, check=False)  # the exit code is judged below
    except FileNotFoundError:
        raise CommandError(argv, 127, f"{argv[0]}: command not found; install it") from None
    except subprocess.TimeoutExpired:
        raise CommandError(argv, 124, f"timed out after {timeout:g} s") from None
    if check and out.returncode != 0:
        raise CommandError(argv, out.returncode, out.stderr or out.stdout)
    return out
