"""One real gateway for the whole fuzz package (see `live`), started once and checked after each test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .live import LiveGateway, live_gateway

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    with live_gateway(tmp_path_factory.mktemp("fuzz")) as gw:
        yield gw


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With more examples than CI runs (HYPOTHESIS_PROFILE=deep), a fuzz test may take as long as it needs."""
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci":
        return
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.timeout(0))
