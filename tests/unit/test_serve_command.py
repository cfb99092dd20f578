"""``cd4ml serve``'s argument: PIPELINE:VERSION or a bare version."""

from __future__ import annotations

import pytest

from cd4ml.cli.common import model_ref
from cd4ml.errors import SpecError


def test_model_references():
    assert model_ref("wine:3") == ("wine", 3)
    assert model_ref("12") == (None, 12)
    assert model_ref("my:pipe:2") == ("my:pipe", 2)


@pytest.mark.parametrize("text", ["wine", "wine:", "wine:v3", "", "3.0"])
def test_anything_else_is_a_usage_error_with_an_example(text):
    with pytest.raises(SpecError, match="expected PIPELINE:VERSION or a version number, e.g. wine:3"):
        model_ref(text)
