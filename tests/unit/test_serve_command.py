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


def test_serving_without_a_pinned_sha256_says_so(tmp_path, monkeypatch, capsys):
    from cd4ml.serve.__main__ import main as serve_main

    monkeypatch.delenv("CD4ML_MODEL_SHA256", raising=False)
    assert serve_main(["--model-dir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "warning: CD4ML_MODEL_SHA256 is not set" in err
    monkeypatch.setenv("CD4ML_MODEL_SHA256", "ab" * 32)
    serve_main(["--model-dir", str(tmp_path / "missing")])
    assert "warning" not in capsys.readouterr().err
