"""Every test runs isolated: its own HOME, store and artifacts, no GitHub token, no colour.

Tests under tests/integration and tests/e2e are marked so that each tier runs alone:
``pytest -m "not integration and not e2e"`` is the fast unit tier.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Fixtures for real services (PostgreSQL, registry, Docker, the local GitHub server) live one
# module per service in tests/fixtures/; every module there is loaded as a plugin.
pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (ROOT / "tests" / "fixtures").glob("*.py")
    if not p.name.startswith("_")
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CD4ML_HOME", str(tmp_path / ".cd4ml"))
    monkeypatch.setenv("NO_COLOR", "1")
    for var in ("CD4ML_STORE_URL", "CD4ML_ARTIFACTS", "GITHUB_TOKEN", "GITHUB_ACTIONS",
                "GITHUB_EVENT_PATH", "GITHUB_STEP_SUMMARY", "GITHUB_SHA", "GITHUB_REF_NAME",
                "GITHUB_HEAD_REF", "GITHUB_ACTOR", "GITHUB_REPOSITORY", "GITHUB_API_URL",
                "GITHUB_SERVER_URL", "GITHUB_RUN_ID", "GITHUB_WORKSPACE", "CD4ML_REPORTS",
                "CD4ML_GITHUB_RETRIES", "CD4ML_GITHUB_BACKOFF"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def pipelines_dir() -> Path:
    return ROOT / "pipelines"


@pytest.fixture
def spec(pipelines_dir):
    """The wine example pipeline's spec."""
    from cd4ml.spec import load_spec

    return load_spec(pipelines_dir / "wine.yaml")


@pytest.fixture
def store():
    """An in-memory store (tests/integration/conftest.py gives integration tests a file)."""
    from cd4ml.store import Store

    with Store("sqlite://") as s:
        yield s


@pytest.fixture
def file_store(tmp_path):
    """A store in a SQLite file: what several threads (the web view's) or processes share; an
    in-memory store is a single connection."""
    from cd4ml.store import Store

    with Store(f"sqlite:///{tmp_path / 'store.db'}") as s:
        yield s
