"""Audit log of every tool call: the table and the batched writer."""

from mcp_gateway.audit.models import STATUSES, ToolCall
from mcp_gateway.audit.writer import AuditWriter

__all__ = ["STATUSES", "AuditWriter", "ToolCall"]
