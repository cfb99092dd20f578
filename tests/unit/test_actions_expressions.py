"""The workflow harness's expressions follow GitHub's documented rules (docs.github.com,
"Evaluate expressions in workflows and actions"), so that a workflow passing here passes there."""

from __future__ import annotations

import pytest

from tests.actions.expressions import ExpressionError, condition, evaluate, interpolate

CTX = {"vars": {"CD4ML_INSTALL": "", "N": "3"}, "github": {"event_name": "push", "ref": "refs/heads/main"},
       "steps": {"preflight": {"outputs": {"ready": "true"}}}, "matrix": {"pipeline": "wine"},
       "secrets": {}, "inputs": {}}


def _status(fn: str) -> bool:
    return fn in ("success", "always")


def test_operators_return_operands_and_compare_loosely():
    assert interpolate("${{ vars.CD4ML_INSTALL || 'cd4ml==1' }}", CTX) == "cd4ml==1"
    assert evaluate("vars.N && 'yes'", CTX) == "yes"
    assert evaluate("github.event_name == 'PUSH'", CTX) is True  # strings: case-insensitive
    assert evaluate("vars.N == 3", CTX) is True  # mixed types compare as numbers
    assert evaluate("vars.missing.deeper", CTX) is None
    assert evaluate("!vars.CD4ML_INSTALL", CTX) is True
    assert evaluate("contains(fromJSON('[\"a\",\"wine\"]'), matrix.pipeline)", CTX) is True
    assert evaluate("format('{0}-{1}', 'a', 1)", CTX) == "a-1"


def test_strings_with_expressions_inside():
    assert interpolate("gate (${{ matrix.pipeline }})", CTX) == "gate (wine)"
    assert interpolate("${{ steps.preflight.outputs.ready == 'true' }}", CTX) is True


def test_if_means_success_and_unless_a_status_function_says_otherwise():
    failed = lambda fn: fn in ("failure", "always")
    assert condition("steps.preflight.outputs.ready == 'true'", CTX, _status)
    assert not condition("steps.preflight.outputs.ready == 'true'", CTX, failed)
    assert condition("${{ !cancelled() }}", CTX, failed)
    assert not condition("${{ github.ref == 'refs/heads/other' }}", CTX, _status)


def test_what_is_not_emulated_is_an_error():
    with pytest.raises(ExpressionError, match="hashFiles"):
        evaluate("hashFiles('x')", CTX)
    with pytest.raises(ExpressionError, match="unknown context"):
        evaluate("job_outputs.x", CTX)
    with pytest.raises(ExpressionError, match="only allowed in if"):
        evaluate("success()", CTX)
