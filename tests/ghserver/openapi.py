"""GitHub's own REST description (npm package ``@octokit/openapi``), installed on first use.

The package is ~400 MB unpacked, so it is not vendored: ``npm install --prefix`` puts it in
``tests/ghserver/.npm/openapi`` (ignored by git) the first time a test needs it, under a file lock
because several pytest processes may start at once. ``CD4ML_GITHUB_OPENAPI`` may name an
``api.github.com.json`` that is already on disk instead.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import shutil
import subprocess
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

#: pinned, so that a new GitHub release cannot change what the tests check between two runs
PACKAGE = "@octokit/openapi@23.0.2"
HERE = Path(__file__).resolve().parent
SPEC_IN_PACKAGE = "node_modules/@octokit/openapi/generated/api.github.com.json"


def npm_package(name: str, packages: list[str], probe: str) -> Path:
    """``npm install`` ``packages`` into their own prefix ``tests/ghserver/.npm/<name>`` (npm prunes
    what a prefix's last install did not name, so each set has its own) unless ``probe``, a path
    in the prefix, is there already. Returns the prefix."""
    prefix = HERE / ".npm" / name
    if (prefix / probe).exists():
        return prefix
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm is needed once to fetch {' '.join(packages)}; install Node.js")
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (prefix / probe).exists():
            out = subprocess.run(
                [npm, "install", "--prefix", str(prefix), "--no-save", "--no-package-lock",
                 "--no-audit", "--no-fund", "--loglevel=error", *packages],
                check=False, capture_output=True, text=True, timeout=600)
            if out.returncode != 0 or not (prefix / probe).exists():
                raise RuntimeError(f"npm install {' '.join(packages)} failed: {out.stderr.strip()[-500:]}")
    return prefix


def spec_path() -> Path:
    """The path of ``api.github.com.json``, installing the npm package if it is missing."""
    override = os.environ.get("CD4ML_GITHUB_OPENAPI")
    if override:
        return Path(override)
    return npm_package("openapi", [PACKAGE], SPEC_IN_PACKAGE) / SPEC_IN_PACKAGE


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """The parsed description (13 MB of JSON: parsed once per process)."""
    with open(spec_path(), encoding="utf-8") as f:
        spec = json.load(f)
    _allow_null_in_enums(spec)
    return spec


def _allow_null_in_enums(node: Any) -> None:
    """GitHub's description marks schemas ``nullable`` where OpenAPI 3.0.3 validators do not let
    null through: an enum that does not list null (``check-run.conclusion`` while a run is in
    progress), and a ``oneOf``/``anyOf`` without a type of its own (``commit.author`` when the
    author has no linked account). GitHub answers null in both: say what it means."""
    if isinstance(node, dict):
        if node.get("nullable") is True:
            if isinstance(node.get("enum"), list) and None not in node["enum"]:
                node["enum"].append(None)
            for key in ("oneOf", "anyOf"):
                if isinstance(node.get(key), list) and "type" not in node:
                    node[key].append({"type": "object", "nullable": True, "enum": [None]})
        for v in list(node.values()):
            _allow_null_in_enums(v)
    elif isinstance(node, list):
        for v in list(node):
            _allow_null_in_enums(v)


def resolve(obj: Any, spec: dict[str, Any] | None = None) -> Any:
    """``obj`` with every local ``$ref`` replaced by what it points at (a new object)."""
    spec = spec or load()
    if isinstance(obj, dict):
        if set(obj) == {"$ref"}:
            node: Any = spec
            for part in obj["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            return resolve(node, spec)
        return {k: resolve(v, spec) for k, v in obj.items()}
    if isinstance(obj, list):
        return [resolve(v, spec) for v in obj]
    return obj


def operation(method: str, template: str) -> dict[str, Any]:
    return load()["paths"][template][method.lower()]


def example(method: str, template: str, status: int, name: str | None = None) -> Any:
    """A deep copy of the spec's example response for an operation: GitHub's full shape."""
    return copy.deepcopy(_example(method, template, status, name))


@cache
def _example(method: str, template: str, status: int, name: str | None) -> Any:
    response = operation(method, template)["responses"][str(status)]
    examples = resolve(resolve(response)["content"]["application/json"]["examples"])
    value = examples[name] if name else next(iter(examples.values()))
    # some examples wrap an Example object in another one
    while isinstance(value, dict) and "value" in value and all(
            k in ("summary", "description", "value") or k.startswith("x-") for k in value):
        value = value["value"]
    return value


@cache
def schema(name: str) -> dict[str, Any]:
    """A component schema, resolved, for validating bodies the operation does not declare."""
    return resolve(load()["components"]["schemas"][name])


def declared_statuses(method: str, template: str) -> set[int]:
    return {int(code) for code in operation(method, template)["responses"] if code.isdigit()}
