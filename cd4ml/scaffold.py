"""``cd4ml init``: scaffold cd4ml in a repository from a sample of the user's data.

Writes a pipeline spec, an expectation suite in great-expectations 1.x's own JSON (made from the
sample: columns, nulls, ranges, categories), the GitHub workflows and the infra templates, so that
the first push already validates, trains, gates, builds and deploys to staging. Nothing is
overwritten unless asked.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import DataError, UsageError

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_ROWS = 10_000
#: cd4ml's own workflows that are not the user's: its CI. Every other workflow cd4ml ships is
#: scaffolded, so a new one (monitoring, ...) needs only its file.
OWN_WORKFLOWS = frozenset({"ci.yml"})
MAX_CATEGORIES = 20
FIRST_PORT = 8701
#: the install line of cd4ml's own workflows (its checkout) and what init writes instead: the
#: release that ran init, unless the repository variable CD4ML_INSTALL says otherwise
OWN_INSTALL = re.compile(r"(?m)^(\s+CD4ML_INSTALL: )\.\[postgres\]$")
PINNED_INSTALL = "${{{{ vars.CD4ML_INSTALL || 'cd4ml[postgres]=={version}' }}}}"


@dataclass(frozen=True)
class InitResult:
    name: str
    task: str
    spec: Path
    suite: Path
    written: tuple[Path, ...]
    skipped: tuple[Path, ...]  # already there, left alone
    updated: tuple[Path, ...] = ()  # already there, the new pipeline added to its lists
    ports: tuple[int, int] = (FIRST_PORT, FIRST_PORT + 1)


def workflow_names() -> tuple[str, ...]:
    """The workflows ``init`` writes into a repository."""
    from cd4ml.release.render import templates_root

    return tuple(sorted(p.name for p in (templates_root() / "workflows").glob("*.yml")
                        if p.name not in OWN_WORKFLOWS))


def _pipeline_lists(text: str) -> list[Any]:
    """The YAML nodes that list the repository's pipelines: each job's ``strategy.matrix.pipeline``
    and the ``pipeline`` input's ``options`` of a manual workflow."""
    import yaml

    def get(node: Any, *keys: str) -> Any:
        for key in keys:
            if not isinstance(node, yaml.MappingNode):
                return None
            node = next((v for k, v in node.value if k.value == key), None)
        return node

    root = yaml.compose(text)
    jobs = get(root, "jobs")
    nodes = [get(job, "strategy", "matrix", "pipeline") for _, job in jobs.value] if jobs else []
    nodes.append(get(root, "on", "workflow_dispatch", "inputs", "pipeline", "options"))
    return [n for n in nodes if isinstance(n, yaml.SequenceNode)]


def _always(names: list[str]) -> Callable[[list[str]], list[str]]:
    """For :func:`with_pipelines`: every list becomes ``names``."""
    return lambda _old: names


def with_pipelines(text: str, pipelines: Callable[[list[str]], list[str]]) -> str:
    """``text`` with each list of pipelines replaced by ``pipelines(old list)``; comments and
    layout elsewhere stay as they are."""
    for node in sorted(_pipeline_lists(text), key=lambda n: -n.start_mark.index):
        names = pipelines([item.value for item in node.value])
        text = (text[:node.start_mark.index] + "[" + ", ".join(names) + "]"
                + text[node.end_mark.index:])
    return text


def listed_pipelines(text: str) -> list[str]:
    """The pipelines a workflow lists (its first list of them), in order."""
    nodes = sorted(_pipeline_lists(text), key=lambda n: n.start_mark.index)
    return [item.value for item in nodes[0].value] if nodes else []


def workflow_for(text: str, pipelines: list[str], version: str) -> str:
    """cd4ml's workflow made the user's: their pipelines (the first one the default of manual
    runs), and cd4ml installed at ``version``."""
    text = with_pipelines(text, lambda _: pipelines)
    text = re.sub(r"(?m)^(\s+default: )wine$", rf"\g<1>{pipelines[0]}", text)
    return OWN_INSTALL.sub(lambda m: m.group(1) + PINNED_INSTALL.format(version=version), text)


def used_ports(pipelines: Path, exclude: Path | None = None) -> set[int]:
    """Every port the specs under ``pipelines`` (but ``exclude``) give an environment
    (``8080+i`` when unset)."""
    import yaml

    ports: set[int] = set()
    for path in [*pipelines.glob("*.yaml"), *pipelines.glob("*.yml")]:
        if path == exclude:
            continue
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        envs = doc.get("environments") if isinstance(doc, dict) else None
        for i, env in enumerate((envs or {}).values() if isinstance(envs, dict) else ()):
            port = env.get("port") if isinstance(env, dict) else None
            ports.add(port if isinstance(port, int) else 8080 + i)
    return ports


def free_ports(pipelines: Path, exclude: Path | None = None, first: int = FIRST_PORT) -> int:
    """The first of two neighbouring ports (staging, production) no other spec here uses."""
    used = used_ports(pipelines, exclude)
    port = first
    while port in used or port + 1 in used:
        port += 2
    return port


def infer_task(target: pd.Series) -> str:
    """Classification for strings, booleans and few integer values; regression otherwise."""
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
        return "classification"
    values = target.dropna()
    integral = bool((values == values.round()).all())
    return "classification" if integral and values.nunique() <= MAX_CATEGORIES else "regression"


def _number(v: Any) -> float | int:
    f = float(v)
    return int(f) if f.is_integer() and abs(f) < 2**53 else round(f, 6)


def suite_from_sample(name: str, sample: pd.DataFrame, target: str, task: str) -> dict:
    """A GE 1.x suite describing the sample, with margins so that fresh data of the same kind
    passes: 10% of the range beyond the observed min and max, nulls allowed where seen."""
    import pandas as pd

    def exp(type_: str, **kwargs: Any) -> dict:
        return {"type": type_, "kwargs": kwargs, "meta": {}, "severity": "critical"}

    out = [exp("expect_table_row_count_to_be_between", min_value=max(1, len(sample) // 10))]
    out.append(exp("expect_table_columns_to_match_set", column_set=list(map(str, sample.columns)),
                   exact_match=False))
    for col in sample.columns:
        s = sample[col]
        if not s.isna().any():
            out.append(exp("expect_column_values_to_not_be_null", column=str(col)))
        values = s.dropna()
        if values.empty:
            continue
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            lo, hi = float(values.min()), float(values.max())
            if col == target and task == "classification":
                out.append(exp("expect_column_values_to_be_in_set", column=str(col),
                               value_set=sorted(_number(v) for v in values.unique())))
                continue
            margin = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
            out.append(exp("expect_column_values_to_be_between", column=str(col),
                           min_value=_number(lo - margin), max_value=_number(hi + margin)))
        elif values.nunique() <= MAX_CATEGORIES:
            out.append(exp("expect_column_values_to_be_in_set", column=str(col),
                           value_set=sorted(map(str, values.unique()))))
    try:
        version = importlib.metadata.version("great-expectations")
    except importlib.metadata.PackageNotFoundError:
        version = "1"
    return {"name": name, "id": None, "expectations": out,
            "meta": {"great_expectations_version": version, "made_by": "cd4ml init"}, "notes": None}


def _default_gates(sample: pd.DataFrame, target: str, task: str,
                   slices: tuple[str, ...] = ()) -> list[dict]:
    """Gates a team can start from: better than a constant guess, and no worse than production;
    per slice column, no slice worse than production's by more than a wider margin (a slice
    has fewer held-out rows, so its metric moves more)."""
    y = sample[target].dropna()
    if task == "classification":
        majority = float(y.value_counts(normalize=True).iloc[0]) if len(y) else 0.5
        floor = round(min(0.99, majority + (1 - majority) * 0.25), 2)
        return [{"metric": "accuracy", "min": floor},
                {"metric": "f1_macro", "max_drop": 0.02},
                *({"metric": "accuracy", "max_drop": 0.05, "slice": s} for s in slices)]
    spread = float(y.std()) if len(y) > 1 and math.isfinite(float(y.std())) else 1.0
    return [{"metric": "r2", "min": 0.0},
            {"metric": "rmse", "max_drop": round(spread * 0.05, 4) or 0.01},
            *({"metric": "rmse", "max_drop": round(spread * 0.1, 4) or 0.02, "slice": s}
              for s in slices)]


def spec_text(name: str, data_rel: str, target: str, task: str, slices: list[str],
              gates: list[dict], port: int) -> str:
    import yaml

    estimator = ("sklearn.ensemble:RandomForestClassifier" if task == "classification"
                 else "sklearn.ensemble:RandomForestRegressor")
    doc = {
        "name": name,
        "data": {"path": data_rel, "target": target, **({"slices": slices} if slices else {})},
        "expectations": f"expectations/{name}.json",
        "model": {"task": task, "estimator": estimator,
                  "params": {"n_estimators": 100}, "seed": 42},
        "split": {"test_size": 0.25},
        "gates": gates,
        "drift": {"method": "psi", "threshold": 0.25},
        "image": {"base": "python:3.11-slim"},
        "environments": {
            "staging": {"target": "local", "port": port, "auto_deploy": True},
            "production": {"target": "local", "port": port + 1, "requires_approval": True},
        },
    }
    head = (f"# cd4ml pipeline '{name}', scaffolded by `cd4ml init` from a sample of {data_rel}.\n"
            "# Every key is documented in cd4ml's README (Pipeline spec reference).\n")
    return head + yaml.safe_dump(doc, sort_keys=False)


def init(data: str | Path, target: str, *, directory: str | Path = ".", name: str | None = None,
         task: str | None = None, slices: tuple[str, ...] = (), force: bool = False,
         port: int | None = None) -> InitResult:
    """Scaffold cd4ml in ``directory`` for ``data``; returns what was written and left alone.

    A repository that has pipelines already gets one more: ports no other spec uses (unless
    ``port`` is given), and its name added to the pipeline lists of the workflows there."""
    from cd4ml import __version__
    from cd4ml.spec import TASKS, DataSpec
    from cd4ml.stages.data import load_frame

    root = Path(directory).resolve()
    data_path = Path(data).resolve()
    if not data_path.is_file():
        raise DataError(f"{data}: no such data file; pass --data PATH to a CSV or Parquet file")
    fmt = "parquet" if data_path.suffix == ".parquet" else "csv"
    frame = load_frame(DataSpec(path=data_path, format=fmt, target=target, slices=tuple(slices)))
    sample = frame.sample(n=min(len(frame), SAMPLE_ROWS), random_state=0) if len(frame) > SAMPLE_ROWS else frame
    name = name or re.sub(r"[^a-z0-9_-]+", "-", data_path.stem.lower()).strip("-") or "model"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name):
        raise UsageError(f"--name {name!r}: use lower-case letters, digits, '-' or '_'")
    if task is not None and task not in TASKS:
        raise UsageError(f"--task {task!r}: one of {', '.join(TASKS)}")
    task = task or infer_task(frame[target])

    pipelines = root / "pipelines"
    spec_path = pipelines / f"{name}.yaml"
    if port is None:
        port = free_ports(pipelines, exclude=spec_path)
    files: dict[Path, str] = {
        spec_path: spec_text(
            name, os.path.relpath(data_path, pipelines), target, task, list(slices),
            _default_gates(sample, target, task, tuple(slices)), port),
        pipelines / "expectations" / f"{name}.json": json.dumps(
            suite_from_sample(name, sample, target, task), indent=2) + "\n",
    }
    written: list[Path] = []
    skipped: list[Path] = []
    updated: list[Path] = []
    from cd4ml.release.render import templates_root

    templates = templates_root()
    for src in sorted(p for p in (templates / "infra").rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        files[root / "infra" / src.relative_to(templates / "infra")] = src.read_text()
    workflows = {root / ".github" / "workflows" / wf: wf for wf in workflow_names()}
    for path, wf in workflows.items():
        # a workflow already there lists the repository's other pipelines: they stay
        listed = listed_pipelines(path.read_text()) if path.exists() else []
        names = listed if name in listed else [*listed, name]
        if path.exists() and not force:
            old = path.read_text()
            new = with_pipelines(old, _always(names))
            if new != old:
                path.write_text(new)
            (updated if new != old else skipped).append(path)
            continue
        files[path] = workflow_for((templates / "workflows" / wf).read_text(), names, __version__)
    for path, text in files.items():
        if path.exists() and not force:
            skipped.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    gitignore = root / ".gitignore"
    lines = gitignore.read_text().splitlines() if gitignore.exists() else []
    if ".cd4ml/" not in lines:
        gitignore.write_text("\n".join([*lines, ".cd4ml/"]) + "\n")
        written.append(gitignore)
    return InitResult(name, task, spec_path, pipelines / "expectations" / f"{name}.json",
                      tuple(written), tuple(skipped), tuple(updated), (port, port + 1))
