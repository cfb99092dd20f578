"""`cd4ml predict` against a deployed environment, and a prediction traced back with
`cd4ml lineage --request-id` from the logs the environment keeps, after its version was replaced."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_deploy_local import clean  # noqa: F401  (fixture)

pytestmark = pytest.mark.docker


def test_predict_then_trace_after_the_version_was_replaced(deploy_world, clean):  # noqa: F811
    assert deploy_world.cli("deploy", "--env", "staging", "1").returncode == 0
    out = deploy_world.cli("predict", "--env", "staging", "--sample", "2", "--request-id", "req-one",
                           "--json")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["model_version"] == 1 and answer["request_id"] == "req-one"
    assert len(answer["predictions"]) == 2 and answer["url"].endswith(":18201")

    # blue/green: v2 replaces v1's container; v1's predictions stay traceable
    assert deploy_world.cli("deploy", "--env", "staging", "2").returncode == 0
    row = json.dumps(deploy_world.row)
    text = deploy_world.cli("predict", "--env", "staging", "--row", row, "--request-id", "req-two")
    assert text.returncode == 0 and "wine:2" in text.stdout and "req-two" in text.stdout

    for request_id, version in (("req-one", 1), ("req-two", 2)):
        found = deploy_world.cli("lineage", "--request-id", request_id, "--json")
        assert found.returncode == 0, found.stderr
        doc = json.loads(found.stdout)
        assert doc["prediction"]["request_id"] == request_id
        assert doc["lineage"]["model"]["version"] == version
        # <logs>/<project>/<pipeline>/<env>/: the project (here the fixture folder) namespaces it
        assert "/logs/" in doc["prediction"]["log_location"]
        assert "/wine/staging/" in doc["prediction"]["log_location"]

    bad = deploy_world.cli("predict", "--env", "staging", "--row", '{"alcohol": "x"}')
    assert bad.returncode == 2 and "422" in bad.stderr and "Traceback" not in bad.stderr
