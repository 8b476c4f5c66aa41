"""What must hold for every fuzzed request, and for the gateway after a run.

Per request (`run_case`): an answer arrives (no dropped connection, no hang); no 5xx;
a JSON answer parses; an SSE answer's events parse; no secret (virtual key or provider
key) appears anywhere in it; an error body stays small (client strings are echoed
bounded); nothing was logged at ERROR; a JSON-RPC answer has the JSON-RPC shape and
the request's id; every tools/call the gateway acted on left exactly one audit row, and
every authenticated model request exactly one ledger row, each with bounded client
strings and a status from the outcome vocabulary.

After a run, and every 50 examples (`assert_healthy`): tools/list still answers, `/readyz`
says ready with every row writer running and nothing diverted or refused, there is one ledger
row per model request that had a key, and every row handed to a writer is in the database.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import currently_in_test_context, note
from sqlalchemy import func
from sqlmodel import Session, select

from llm_proxy.ledger import ModelRequest
from mcp_gateway.audit import ToolCall
from policies.bounds import MAX_ERROR_CHARS, MAX_ID_CHARS, MAX_NAME_CHARS
from policies.outcomes import OUTCOMES

from .cases import MODERN, Case, send, to_corpus
from .live import ALICE, SECRETS, TOOLS, LiveGateway
from .wire import Answer, WireClient, build_request

MAX_ERROR_BODY = 16_384
"""Largest error answer allowed: a client string is quoted at most 128 characters, headers are small."""
LEDGER_PATHS = ("/v1/messages", "/v1/chat/completions")
_VALID_OUTCOMES = set(OUTCOMES)


def run_case(case: Case, client: WireClient, gw: LiveGateway) -> Answer:
    """Send one case and check every per-request invariant; returns the answer."""
    _note(f"corpus entry: {orjson.dumps(to_corpus(case)).decode()[:2000]}")
    gw.mock.received.clear()  # the mock keeps what it received; a long run must not keep every body
    log_mark = len(gw.errors.records)
    audit_before = len(gw.audit_rows)
    try:
        answer = send(case, client, gw)
    except BaseException:
        if _ledger_path(case):
            gw.ledger_uncertain += 1
        raise
    count_ledger_row(case, answer, gw)  # before any check can fail, so the totals stay right
    _note(f"answer: {answer.status} {answer.headers!r} {answer.body[:500]!r}")
    check_answer(case, answer)
    check_audit(case, answer, gw, audit_before)
    check_ledger(case, answer, gw)
    errors = gw.errors.since(log_mark)
    assert not errors, f"the gateway logged errors for this request: {errors}"
    return answer


def _note(text: str) -> None:
    """Printed with a falsifying example (the corpus entry to commit); nothing outside Hypothesis."""
    if currently_in_test_context():
        note(text)


def check_answer(case: Case, answer: Answer) -> None:
    assert answer.status < 500, f"5xx answer: {answer.status} {answer.body[:500]!r}"
    raw_headers = "\n".join(f"{k}: {v}" for k, v in answer.headers)
    for secret in SECRETS:
        assert secret.encode() not in answer.body, "a secret is in the answer's body"
        assert secret not in raw_headers, "a secret is in the answer's headers"
    if not answer.complete or case.method == "HEAD":
        return
    if answer.status == 202:
        assert answer.body == b"", "a 202 has a body"
    if answer.content_type == "application/json":
        document = orjson.loads(answer.body)  # raises on a body that is not JSON
        if answer.status >= 400 or (isinstance(document, dict) and "error" in document):
            # The request's id is echoed whole (JSON-RPC says so); everything else must stay small.
            echoed_id = len(orjson.dumps(document.get("id"))) if isinstance(document, dict) else 0
            size = len(answer.body) - echoed_id
            assert size <= MAX_ERROR_BODY, f"a {size}-byte error answer"
        if (
            case.path == "/mcp"
            and case.method == "POST"
            and isinstance(document, dict)
            and "jsonrpc" in document
        ):
            check_jsonrpc(case, document)
    elif answer.content_type == "text/event-stream":
        for line in answer.body.split(b"\n"):
            if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                orjson.loads(line[5:])
    if answer.status == 401 and case.path == "/mcp":
        assert answer.header("www-authenticate"), "a 401 from /mcp without WWW-Authenticate"


def check_jsonrpc(case: Case, document: dict[str, Any]) -> None:
    assert document["jsonrpc"] == "2.0"
    assert ("result" in document) != ("error" in document), document
    if "error" in document:
        error = document["error"]
        assert isinstance(error["code"], int) and isinstance(error["message"], str), error
        assert len(error["message"]) <= 2 * MAX_ERROR_CHARS, f"a {len(error['message'])}-character message"
    message = case.message()
    request_id = message.get("id") if isinstance(message, dict) else None
    valid_id = isinstance(request_id, str | int) and not isinstance(request_id, bool)
    refused_whole = "error" in document and document["error"]["code"] in (-32700, -32600)
    if valid_id and not (refused_whole and document["id"] is None):  # JSON-RPC allows null there
        assert document["id"] == request_id, f"answered id {document['id']!r} for id {request_id!r}"


def _method(case: Case) -> str | None:
    message = case.message()
    if case.path != "/mcp" or case.method != "POST" or not isinstance(message, dict) or "id" not in message:
        return None
    method = message.get("method")
    return method if isinstance(method, str) else None


AUDITED = {
    "tools/call": ("Unknown tool", "tools/call"),
    "resources/read": ("Unknown resource", "resources/read"),
    "prompts/get": ("Unknown prompt", "prompts/get"),
    "completion/complete": ("Unknown prompt", "Unknown resource", "completion/complete"),
}
"""The audited methods, and how their errors start when the gateway acted on the request."""


def check_audit(case: Case, answer: Answer, gw: LiveGateway, before: int) -> None:
    """A tools/call (resources/read, prompts/get, completion/complete) the gateway acted on has
    exactly one row; nothing else has any."""
    rows = gw.audit_rows.rows[before:]
    method = _method(case)
    if method not in AUDITED:
        assert not rows, f"an audit row for a request that is not audited: {rows}"
        return
    assert len(rows) <= 1, f"{len(rows)} audit rows for one request"
    document: Any = None
    if answer.complete and answer.content_type == "application/json":
        document = orjson.loads(answer.body)
    elif answer.complete and answer.content_type == "text/event-stream":
        events = [line[5:] for line in answer.body.split(b"\n") if line.startswith(b"data:")]
        document = orjson.loads(events[-1]) if events else None
    error = document.get("error") if isinstance(document, dict) else None
    acted = isinstance(document, dict) and (
        "result" in document
        or (isinstance(error, dict) and str(error.get("message")).startswith(AUDITED[method]))
    )
    if acted:
        assert len(rows) == 1, "a tools/call the gateway answered left no audit row"
    if rows:
        row = rows[0]
        assert row["status"] in _VALID_OUTCOMES, row["status"]
        assert row["key_id"] in ("alice", "bob")
        assert len(row["exposed_name"]) <= MAX_NAME_CHARS
        for name in ("request_id", "client_name", "client_version"):
            assert row[name] is None or len(row[name]) <= MAX_ID_CHARS, name
        assert row["error"] is None or len(row["error"]) <= MAX_ERROR_CHARS


def _ledger_path(case: Case) -> bool:
    return case.path.split("?")[0] in LEDGER_PATHS


def count_ledger_row(case: Case, answer: Answer, gw: LiveGateway) -> None:
    """Add this answer to the ledger rows the gateway owes (checked in bulk by `assert_healthy`)."""
    if not _ledger_path(case):
        return
    request_id = answer.header("gateway-request-id")
    if request_id is None and (isinstance(case.content_length, str) or case.raw is not None):
        # A Content-Length shorter than the body: the rest reads as a second, malformed request, and
        # uvicorn may answer that one (400, closing the connection) before the model request it
        # passed on to the gateway answers. That request may or may not have a row.
        gw.ledger_uncertain += 1
    elif request_id is not None and answer.status != 401:
        gw.ledger_expected += 1  # past the key check: exactly one row


def check_ledger(case: Case, answer: Answer, gw: LiveGateway) -> None:
    """Every model request that got past the key check has exactly one ledger row."""
    request_id = answer.header("gateway-request-id")
    if not _ledger_path(case) or request_id is None or answer.status == 401:
        return
    while True:  # the row comes when the request ends, which is just after its answer
        seen = len(gw.ledger_rows)
        rows = [r for r in gw.ledger_rows.rows if r["request_id"] == request_id]
        if rows or len(gw.ledger_rows.wait_for(seen + 1, timeout=10)) == seen:
            break
    assert len(rows) == 1, f"{len(rows)} ledger rows for request {request_id}"
    row = rows[0]
    assert row["status"] in _VALID_OUTCOMES, row["status"]
    if answer.complete:
        assert row["http_status"] == answer.status, (row["http_status"], answer.status)
    for name in ("requested_model", "served_model"):
        assert row[name] is None or len(row[name]) <= MAX_NAME_CHARS, name
    for name in ("session_id", "user_agent", "upstream_request_id"):
        assert row[name] is None or len(row[name]) <= MAX_ID_CHARS, name
    assert row["error"] is None or len(row["error"]) <= MAX_ERROR_CHARS


def _tools_list(client: WireClient, gw: LiveGateway) -> list[str]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = orjson.dumps({"jsonrpc": "2.0", "id": "health", "method": "tools/list", "params": {"_meta": meta}})
    headers = [
        (b"Host", f"{gw.host}:{gw.port}".encode()),
        (b"Authorization", f"Bearer {ALICE}".encode()),
        (b"Content-Type", b"application/json"),
        (b"Accept", b"application/json, text/event-stream"),
        (b"MCP-Protocol-Version", MODERN.encode()),
        (b"Mcp-Method", b"tools/list"),
    ]
    answer = client.exchange("POST", build_request("POST", "/mcp", headers, body), fresh=True)
    assert answer.status == 200, (answer.status, answer.body[:300])
    return sorted(tool["name"] for tool in orjson.loads(answer.body)["result"]["tools"])


def _readyz(client: WireClient, gw: LiveGateway) -> tuple[int, dict[str, Any]]:
    """/readyz from a loopback peer: the full detail."""
    headers = [(b"Host", f"{gw.host}:{gw.port}".encode())]
    answer = client.exchange("GET", build_request("GET", "/readyz", headers, b""), fresh=True)
    return answer.status, orjson.loads(answer.body)


def assert_healthy(gw: LiveGateway) -> None:
    """The gateway still serves and its writers still write, with every row accounted for."""
    client = WireClient(gw.host, gw.port)
    try:
        assert _tools_list(client, gw) == sorted(TOOLS)
        status, detail = _readyz(client, gw)
        assert status == 200 and detail["status"] == "ready", detail
        # Every model request with a key has its row (the last ones may still be ending)...
        rows = len(gw.ledger_rows.wait_for(gw.ledger_expected))
        assert gw.ledger_expected <= rows <= gw.ledger_expected + gw.ledger_uncertain, (
            f"{rows} ledger rows for {gw.ledger_expected} model requests with a key "
            f"(and {gw.ledger_uncertain} whose answer uvicorn replaced)"
        )
        # ...and every row handed to a writer reaches the database.
        submitted = len(gw.audit_rows), len(gw.ledger_rows)
        gw.flush()
        _, detail = _readyz(client, gw)
    finally:
        client.close()
    for writer in ("audit", "ledger", "alerts"):
        health = detail[writer]
        assert health["stopped"] is None and health["last_error"] is None, (writer, health)
        assert health["diverted_to_fallback"] == 0 and health["refused_rows"] == 0, (writer, health)

    def count(table: Any) -> int:
        with Session(gw.runtime.engine) as db:
            return int(db.exec(select(func.count()).select_from(table)).one())

    # (A row may be handed over between the flush and the count: at least those before, at most all.)
    assert submitted[0] <= count(ToolCall) <= len(gw.audit_rows), "audit rows submitted but not stored"
    assert submitted[1] <= count(ModelRequest) <= len(gw.ledger_rows), "ledger rows submitted but not stored"
