"""Send rows to a deployed environment and read the answer: what the demo does after a deploy,
and what a person does to check one ("what does production say for this row?")."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cd4ml.errors import DataError, DeployError

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.store import Store


@dataclass(frozen=True)
class Prediction:
    url: str
    request_id: str
    pipeline: str | None
    model_version: int | None
    predictions: list
    probabilities: list | None
    rows: list[dict]
    seconds: float


def sample_rows(spec: Spec, store: Store, environment: str, n: int) -> list[dict]:
    """``n`` rows of the pipeline's data, with the columns of the version serving there."""
    from cd4ml.stages.data import load_frame

    dep = store.current_deployment(spec.name, environment)
    if dep is None:
        raise DeployError(f"nothing is deployed in {environment}; deploy first: "
                          f"cd4ml deploy --env {environment}")
    inputs = [i["name"] for i in store.model_by_id(dep.model_version_id).signature["inputs"]]
    frame = load_frame(spec.data)
    return json.loads(frame[inputs].head(n).to_json(orient="records"))


def predict(spec: Spec, environment: str, rows: list[dict], *, request_id: str | None = None,
            timeout: float = 10.0) -> Prediction:
    """POST ``rows`` to the environment's ``/predict``; the answer with its request id."""
    from cd4ml.release.targets import get_target

    if not rows or not all(isinstance(r, dict) for r in rows):
        raise DataError("rows: give one or more JSON objects of feature: value")
    env = spec.environment(environment)
    url = get_target(env).url(spec, env)
    rid = request_id or uuid.uuid4().hex
    req = urllib.request.Request(
        f"{url}/predict", data=json.dumps({"instances": rows}).encode(), method="POST",
        headers={"Content-Type": "application/json", "X-Request-ID": rid})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace").strip()
        try:
            detail = json.loads(detail).get("detail") or json.loads(detail).get("error") or detail
        except (ValueError, AttributeError):
            pass
        raise DataError(f"{url}/predict answered {e.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DeployError(f"{environment} at {url} does not answer ({getattr(e, 'reason', e)}); "
                          "see 'cd4ml status'") from None
    except ValueError:
        raise DeployError(f"{url}/predict answered something that is not JSON") from None
    return Prediction(
        url=url, request_id=body.get("request_id", rid), pipeline=body.get("pipeline"),
        model_version=body.get("model_version"), predictions=body.get("predictions", []),
        probabilities=body.get("probabilities"), rows=rows,
        seconds=time.perf_counter() - started)


def parse_rows(text: str) -> list[dict[str, Any]]:
    """A JSON object (one row) or a list of them, as given on the command line."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise DataError(f"--row: not JSON ({e}); e.g. --row '{{\"alcohol\": 13.2, ...}}'") from None
    rows = value if isinstance(value, list) else [value]
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise DataError("--row: give a JSON object of feature: value, or a list of them")
    return rows
