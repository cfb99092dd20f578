"""Integration tests get a store in a file, so that a ``cd4ml`` subprocess can open it too."""

from __future__ import annotations

import pytest


@pytest.fixture
def store(tmp_path):
    from cd4ml.store import Store

    with Store(f"sqlite:///{tmp_path / 'store.db'}") as s:
        yield s
