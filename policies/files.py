"""Checks for file paths in the policy file (relative paths are relative to the working directory)."""

from __future__ import annotations

from pathlib import Path


def check_file_path(value: str, field: str) -> str:
    """``value`` unless it names an existing directory, which the gateway would fail to open at start."""
    if value and Path(value).is_dir():
        raise ValueError(f"{field} {value!r} is a directory; give the path of a file (created if missing)")
    return value
