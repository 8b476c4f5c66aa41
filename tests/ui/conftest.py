"""Fixtures of the dashboard tests (tests/ui/harness.py has the harness)."""

from __future__ import annotations

import pytest

from tests.ui.harness import ADMIN, ADMIN_ENV


@pytest.fixture(autouse=True)
def admin_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADMIN_ENV, ADMIN)
