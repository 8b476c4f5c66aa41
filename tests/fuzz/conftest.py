"""One real gateway for the whole fuzz package (see `live`), started once and checked after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .live import LiveGateway, live_gateway


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    with live_gateway(tmp_path_factory.mktemp("fuzz")) as gw:
        yield gw
