"""Audit log of every tool call: the table and the batched writer."""

from .models import STATUSES, ToolCall
from .writer import AuditWriter

__all__ = ["STATUSES", "AuditWriter", "ToolCall"]
