"""The typed rows the request paths build name exactly the columns of their tables."""

from __future__ import annotations

from typing import Any, get_type_hints

import pytest

from llm_proxy.ledger import ModelRequest, ModelRequestRow
from mcp_gateway.audit.models import ToolCall, ToolCallRow


@pytest.mark.parametrize(("row", "model"), [(ToolCallRow, ToolCall), (ModelRequestRow, ModelRequest)])
def test_row_keys_are_the_table_columns(row: Any, model: Any) -> None:
    columns = {column.name for column in model.__table__.columns}
    assert set(get_type_hints(row)) == columns
