"""What a deployed environment really serves, against what the store says it serves.

Names can lie: a tag can be moved by another repository's build, a container of the same name
can belong to someone else. The model server answers ``/metadata`` with the artifact's sha256,
its version and the run that trained it; :func:`mismatch` compares those answers with the
store's record. Deploy, promote and rollback call it after the target says the release
serves (a mismatch fails and rolls back the release), and ``status`` calls it on every probe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cd4ml.store import ModelVersion


def mismatch(model: ModelVersion, served: list[dict[str, Any]] | None) -> str | None:
    """Why the servers' answers are not ``model`` (None when they all are, or when the target
    cannot be asked: ``served`` None)."""
    if served is None:
        return None
    if not served:
        return f"no server answered /metadata; {model.ref} (sha256 {model.sha256[:12]}) expected"
    for s in served:
        same = (s.get("sha256") == model.sha256 and s.get("model_version") == model.version
                and s.get("pipeline") in (None, model.pipeline))
        if not same:
            return (f"a server answers {s.get('pipeline')}:{s.get('model_version')} "
                    f"(sha256 {str(s.get('sha256'))[:12]}, run {s.get('run_id')}), but the store "
                    f"records {model.ref} (sha256 {model.sha256[:12]}, run {model.run_id})")
    return None
