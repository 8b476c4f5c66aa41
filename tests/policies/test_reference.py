"""docs/configuration.md is generated from the models: it must be current, and every field described."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from policies.reference import field_docs, render_markdown, undocumented

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "configuration.md"


def test_every_field_has_a_description() -> None:
    assert undocumented() == [], "add description= to these fields in policies/"


def test_the_committed_reference_is_current() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render_markdown(), (
        "docs/configuration.md is stale: run `python -m policies.reference > docs/configuration.md`"
    )


def test_the_script_prints_the_reference() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "policies.reference"], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout == render_markdown()


def test_a_field_without_a_description_is_found() -> None:
    class Inner(BaseModel):
        documented: int = Field(default=1, description="yes")
        bare: str = "x"

    class Outer(BaseModel):
        items: list[Inner] = Field(default_factory=list, description="some")

    assert undocumented(Outer) == ["items[].bare"]
    assert [doc.path for doc in field_docs(Outer)] == ["items", "items[].documented", "items[].bare"]


def test_the_reference_names_every_section_and_the_interpolation_rule() -> None:
    text = render_markdown()
    for section in ("gateway", "teams", "virtual_keys", "mcp", "providers", "routes", "pricing", "budgets"):
        assert f"## `{section}`" in text
    for path in ("gateway.allowed_hosts", "gateway.key_refresh_seconds", "gateway.session_idle_seconds"):
        assert f"| `{path}` |" in text
    assert "`${NAME:-default}`" in text and "`$$`" in text
