"""Every crasher the fuzzer (or anyone) found, replayed on every run: `tests/fuzz_corpus/*.json`.

Each entry is one raw request (see `tests.fuzz.cases` for the format), a note on why it
crashed and which commit fixed it, and what the answer must be. Each replay must pass every
per-request check of the fuzzer (`checks.run_case`), match its entry's expectations, and
leave the gateway healthy (`checks.assert_healthy`). An entry with ``"xfail": "<reason>"``
is a known crasher not fixed yet: it must still fail (strict), so fixing it is noticed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from .cases import from_corpus
from .checks import assert_healthy, run_case
from .live import LiveGateway
from .wire import Answer, WireClient

CORPUS = Path(__file__).resolve().parent.parent / "fuzz_corpus"
REQUIRED = ("note", "found_by", "fixed_in", "xfail", "request", "expect")


def entries() -> list[Any]:
    params = []
    for path in sorted(CORPUS.glob("*.json")):
        entry = json.loads(path.read_text(encoding="utf-8"))
        marks = [pytest.mark.xfail(reason=entry["xfail"], strict=True)] if entry.get("xfail") else []
        params.append(pytest.param(path, marks=marks, id=path.stem))
    return params


pytestmark = pytest.mark.fuzz


def check_expectations(expect: dict[str, Any], answer: Answer) -> None:
    statuses = expect["status"] if isinstance(expect["status"], list) else [expect["status"]]
    assert answer.status in statuses, f"status {answer.status}, expected {statuses}: {answer.body[:300]!r}"
    if "jsonrpc_code" in expect:
        assert orjson.loads(answer.body)["error"]["code"] == expect["jsonrpc_code"], answer.body[:300]
    for text in expect.get("body_contains", []):
        assert text.encode() in answer.body, f"{text!r} not in {answer.body[:300]!r}"
    if "max_body_bytes" in expect:
        assert len(answer.body) <= expect["max_body_bytes"], f"a {len(answer.body)}-byte answer"


@pytest.mark.parametrize("path", entries())
def test_crasher_stays_fixed(gateway: LiveGateway, path: Path) -> None:
    entry = json.loads(path.read_text(encoding="utf-8"))
    assert all(field in entry for field in REQUIRED), f"{path.name} lacks one of {REQUIRED}"
    client = WireClient(gateway.host, gateway.port)
    try:
        answer = run_case(from_corpus(entry), client, gateway)
    finally:
        client.close()
    check_expectations(entry["expect"], answer)
    assert_healthy(gateway)


def test_the_corpus_starts_with_deep_nesting() -> None:
    """The first entries are the deep-nesting crashers (the ones that once stopped the audit writer)."""
    names = sorted(path.name for path in CORPUS.glob("*.json"))
    assert len(names) >= 7 and all("deep" in name for name in names[:7]), names[:7]
