"""Image references and registry credentials (no registry needed; pushes are integration)."""

from __future__ import annotations

import pytest

from cd4ml.errors import BuildError
from cd4ml.release import registry


@pytest.mark.parametrize("ref, repo, tag, host", [
    ("127.0.0.1:5000/cd4ml/wine:3", "127.0.0.1:5000/cd4ml/wine", "3", "127.0.0.1:5000"),
    ("registry.example.com/team/wine:12", "registry.example.com/team/wine", "12", "registry.example.com"),
    ("localhost/wine:1", "localhost/wine", "1", "localhost"),
    ("cd4ml/wine:1", "cd4ml/wine", "1", None),
    ("127.0.0.1:5000/wine", "127.0.0.1:5000/wine", "latest", "127.0.0.1:5000"),
])
def test_references_split_into_repository_tag_and_registry(ref, repo, tag, host):
    assert registry.split_reference(ref) == (repo, tag)
    assert registry.registry_of(ref) == host


def test_credentials_come_from_the_environment_in_pairs(monkeypatch):
    monkeypatch.delenv(registry.USER_ENV, raising=False)
    monkeypatch.delenv(registry.PASSWORD_ENV, raising=False)
    assert registry.credentials_from_env() is None
    monkeypatch.setenv(registry.USER_ENV, "ci")
    with pytest.raises(BuildError, match="CD4ML_REGISTRY_PASSWORD is not set"):
        registry.credentials_from_env()
    monkeypatch.setenv(registry.PASSWORD_ENV, "hunter2-secret")
    creds = registry.credentials_from_env()
    assert creds.username == "ci" and creds.password == "hunter2-secret"
    # a log line or a traceback that shows the object never shows the password
    assert "hunter2-secret" not in repr(creds) and "hunter2-secret" not in str(creds)


def test_a_reference_without_a_registry_cannot_be_asked_about():
    with pytest.raises(BuildError, match="names no registry"):
        registry.manifest_digest("cd4ml/wine:1")
