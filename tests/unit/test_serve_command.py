"""``python -m cd4ml.serve`` as ``cd4ml serve`` starts it (model-version arguments are tested
with the one grammar, in test_refs.py)."""

from __future__ import annotations


def test_serving_without_a_pinned_sha256_says_so(tmp_path, monkeypatch, capsys):
    from cd4ml.serve.__main__ import main as serve_main

    monkeypatch.delenv("CD4ML_MODEL_SHA256", raising=False)
    assert serve_main(["--model-dir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "warning: CD4ML_MODEL_SHA256 is not set" in err
    monkeypatch.setenv("CD4ML_MODEL_SHA256", "ab" * 32)
    serve_main(["--model-dir", str(tmp_path / "missing")])
    assert "warning" not in capsys.readouterr().err
