"""Which spec a tracked run belongs to, found from what ``start_run`` was given."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cd4ml.spec import Spec


def find_spec(pipeline: str | Path | Spec, root: Path | None = None) -> Spec | None:
    """The spec of ``pipeline``: a Spec, a spec path, or a name looked up under ``pipelines/``
    (``<name>.yaml``, else the spec there whose ``name:`` it is). None when there is none."""
    import yaml

    from cd4ml.spec import Spec, load_spec

    if isinstance(pipeline, Spec):
        return pipeline
    text = str(pipeline)
    if text.endswith((".yaml", ".yml")) or isinstance(pipeline, Path):
        return load_spec(pipeline)
    folder = (root or Path.cwd()) / "pipelines"
    candidates = [folder / f"{text}.yaml", folder / f"{text}.yml"]
    if folder.is_dir():
        candidates += sorted(folder.glob("*.y*ml"))
    for path in dict.fromkeys(candidates):
        if not path.is_file():
            continue
        try:
            name = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("name")
        except (yaml.YAMLError, OSError, AttributeError, UnicodeDecodeError):
            continue  # not ours to judge here: 'cd4ml run' reports a broken spec
        if name == text:
            return load_spec(path)
    return None
