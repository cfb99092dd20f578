"""Check mermaid diagrams with mermaid's own parser, as GitHub will render them (npm packages
``mermaid`` and ``jsdom``, installed on first use like the OpenAPI description)."""

from __future__ import annotations

import json
import shutil
import subprocess

from tests.ghserver.openapi import HERE, npm_package

PACKAGES = ["mermaid@11.17.2", "jsdom@29.1.1"]


def parse_errors(diagrams: list[str]) -> list[str | None]:
    """For each diagram: None when mermaid parses it, else mermaid's error message."""
    prefix = npm_package("mermaid", PACKAGES, "node_modules/mermaid/package.json")
    script = prefix / "mermaid.mjs"  # beside its node_modules, so that its imports resolve
    shutil.copyfile(HERE / "mermaid.mjs", script)
    out = subprocess.run(["node", str(script)], input=json.dumps(diagrams), capture_output=True,
                         text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"node {script} failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)
