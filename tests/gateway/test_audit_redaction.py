"""Secrets never reach the audit log: not the database, not the fallback file.

A secret passed as a tool argument, under a secret-looking name or shaped like a credential inside
free text, is replaced by a marker in the writer's thread; content logging can be switched off per
server and per key; the policy adds names and patterns and may skip built-in kinds per server.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from gateway_app.database import create_schema
from gateway_common.db import make_engine
from mcp_gateway.audit import AuditWriter, ToolCall
from mcp_gateway.audit.redaction import DETECTORS, MAX_CONTAINERS, Redactor, TooLarge
from policies import GatewayPolicy, load_policy_text
from policies.gateway_settings import AuditSettings
from policies.secrets import hash_secret
from policies.servers import REDACTION_KINDS
from tests.conftest import mcp_client, run_gateway, upstream_stdio

GITHUB = "ghp_" + "Q7x" * 12
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----"

SHAPES = {
    "private_key": (f"key:\n{PEM}\nend", PEM),
    "aws_access_key": (f"id {AWS_ID} here", AWS_ID),
    "aws_secret_key": (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    "github_token": (f"push with {GITHUB}", GITHUB),
    "slack_token": ("hook xoxb-123456789012-abcdefABCDEF done", "xoxb-123456789012-abcdefABCDEF"),
    "google_api_key": (
        "maps AIzaSyD-abcdefghijklmnopqrstuvwxyz12345 x",
        "AIzaSyD-abcdefghijklmnopqrstuvwxyz12345",
    ),
    "stripe_key": ("pay sk_live_4eC39HqLyjWDarjtT1zdp7dc now", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    "anthropic_key": (
        "use sk-ant-api03-abcdefghijklmnopqrstuvwx_yz",
        "sk-ant-api03-abcdefghijklmnopqrstuvwx_yz",
    ),
    "openai_key": ("use sk-proj-abcdefghijklmnopqrstuvwxyz0123", "sk-proj-abcdefghijklmnopqrstuvwxyz0123"),
    "gateway_key": ("key mgw_Zk3vP0q9yX2mN5bR8tW1cE4gH7jL0", "mgw_Zk3vP0q9yX2mN5bR8tW1cE4gH7jL0"),
    "jwt": (f"session {JWT} ok", JWT),
    "bearer": ("curl -H 'Authorization: Bearer abc.def-ghi_jkl' x", "abc.def-ghi_jkl"),
    "url_password": ("DATABASE_URL=postgres://app:hunter2x@db:5432/prod", "hunter2x"),
    "assignment": ("PGPASSWORD=correct-horse psql -h db", "correct-horse"),
}


def test_every_built_in_kind_has_a_detector() -> None:
    assert {d.kind for d in DETECTORS} | {"field"} == set(REDACTION_KINDS)
    assert set(SHAPES) | {"field"} == set(REDACTION_KINDS)


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_a_credential_shape_in_free_text_is_replaced(kind: str) -> None:
    text_in, secret = SHAPES[kind]
    cleaned, count = Redactor().text(text_in)
    assert secret not in cleaned and count >= 1
    assert f"[redacted:{kind}]" in cleaned
    # A server may skip the kind (and then keeps it, unless another kind covers the same text).
    kept, _ = Redactor(skip=[kind]).text(text_in)
    assert f"[redacted:{kind}]" not in kept


@pytest.mark.parametrize(
    "harmless",
    [
        {"max_tokens": 1024, "token_count": 7, "tokens": ["a", "b"], "input_tokens": 5},
        {
            "path": "src/keyboard/monkey.py",
            "text": "task-0123456789abcdefghijklmnop and disk-0123456789abcdefghijk",
        },
        {"url": "https://example.com:8443/a@b", "note": "the bearer of bad news; pass the salt"},
        {"code": "def main():\n    print('hello world')  # key: value\n" * 50},
        {"secret": False, "password": None, "has_token": True},
    ],
)
def test_what_is_no_secret_is_kept_as_it_is(harmless: dict[str, Any]) -> None:
    value, count = Redactor().value(harmless)
    assert count == 0 and value is harmless


def test_values_under_secret_looking_names_are_replaced_at_any_depth_without_touching_the_original() -> None:
    shared = {"client_secret": 12345, "name": "x"}
    original = {
        "headers": {"Authorization": "Basic dXNlcjpwYXNz", "X-Api-Key": "k", "Accept": "json"},
        "env": [{"GITHUB_TOKEN": "whatever"}, {"HOME": "/root"}],
        "login": {"user": "bob", "Password": ["a", "list"], "pass": "pw"},
        "twice": [shared, shared],
        "cookies": "a=b",
    }
    before = copy.deepcopy(original)
    cleaned, count = Redactor().value(original)
    assert original == before  # the request path's objects are never changed
    assert cleaned["headers"] == {
        "Authorization": "[redacted:field]",
        "X-Api-Key": "[redacted:field]",
        "Accept": "json",
    }
    assert cleaned["env"] == [{"GITHUB_TOKEN": "[redacted:field]"}, {"HOME": "/root"}]
    assert cleaned["login"] == {"user": "bob", "Password": "[redacted:field]", "pass": "[redacted:field]"}
    assert cleaned["twice"] == [{"client_secret": "[redacted:field]", "name": "x"}] * 2
    assert cleaned["cookies"] == "[redacted:field]"
    assert count == 7  # the shared object once


def test_the_walk_is_iterative_and_bounded() -> None:
    deep: Any = {"token": "t"}
    for _ in range(5000):  # far deeper than Python's recursion limit
        deep = {"a": [deep]}
    cleaned, count = Redactor().value(deep)
    assert count == 1
    for _ in range(5000):
        cleaned = cleaned["a"][0]
    assert cleaned == {"token": "[redacted:field]"}
    with pytest.raises(TooLarge):
        Redactor().value([{} for _ in range(MAX_CONTAINERS + 1)])


def test_policy_names_and_patterns_add_to_the_built_in_ones() -> None:
    redactor = Redactor(
        extra_keys=["ssn", "x-*-sig"], extra_patterns=[r"ACME-[0-9]{6}", r"pin (?P<secret>\d{4})"]
    )
    value = {"SSN": "123-45-6789", "X-Amz-Sig": "abc", "note": "ticket ACME-123456, pin 1234", "plain": "ok"}
    cleaned, count = redactor.value(value)
    assert cleaned == {
        "SSN": "[redacted:field]",
        "X-Amz-Sig": "[redacted:field]",
        "note": "ticket [redacted:pattern], pin [redacted:pattern]",
        "plain": "ok",
    }
    assert count == 3


def test_a_cut_preview_is_cleaned_as_json_text() -> None:
    preview = (
        '{"api_key": "abc", "x": {"Password": "hunter2", "n": 1}, "t": "see '
        + GITHUB
        + '", "end": "use ghp_abc'
    )
    cleaned, _ = Redactor().json_text(preview)
    for secret in ('abc"', "hunter2", GITHUB, "ghp_abc"):
        assert secret not in cleaned
    assert '"n": 1' in cleaned
    # JSON text inside a string (a tool answering with JSON), as the preview of the result shows it.
    embedded = orjson.dumps({"text": orjson.dumps({"password": "hunter2", "user": "bob"}).decode()}).decode()
    cleaned, count = Redactor().json_text(embedded)
    assert "hunter2" not in cleaned and "bob" in cleaned and count == 1


# -- the writer ------------------------------------------------------------------------------


def row(**overrides: Any) -> Any:
    base: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "timestamp": datetime.now(UTC),
        "request_id": "1",
        "key_id": "alice",
        "key_name": "Alice",
        "team": "eng",
        "client_name": "test",
        "client_version": "1",
        "session_id": None,
        "protocol_version": "2026-07-28",
        "exposed_name": "fs__run",
        "server": "fs",
        "tool": "run",
        "arguments": {"command": "deploy", "api_key": "sk-live-abcdef", "note": f"token is {GITHUB}"},
        "arguments_truncated": False,
        "result": {"content": [{"type": "text", "text": f"done; AWS key {AWS_ID}"}]},
        "result_truncated": False,
        "status": "ok",
        "error": None,
        "blocked_by": None,
        "latency_ms": 1.5,
        "upstream_latency_ms": 1.2,
    }
    base.update(overrides)
    return base


SECRETS = ("sk-live-abcdef", GITHUB, AWS_ID)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    create_schema(engine)
    yield engine
    engine.dispose()


def stored(engine: Engine) -> dict[str, ToolCall]:
    with Session(engine) as db:
        return {r.id: r for r in db.exec(select(ToolCall)).all()}


def database_bytes(tmp_path: Path) -> bytes:
    return b"".join(path.read_bytes() for path in tmp_path.glob("audit.db*"))


@pytest.mark.anyio
async def test_no_secret_reaches_the_database(engine: Engine, tmp_path: Path) -> None:
    writer = AuditWriter(engine, AuditSettings(fallback_file=str(tmp_path / "fb")))
    await writer.start()
    submitted = row(id="a", error=f"upstream said: bad credentials {GITHUB}")
    original = copy.deepcopy(submitted)
    writer.submit(submitted)
    await writer.flush()
    assert submitted == original  # what the request path handed over is untouched
    saved = stored(engine)["a"]
    assert saved.arguments == {
        "command": "deploy",
        "api_key": "[redacted:field]",
        "note": "token is [redacted:github_token]",
    }
    assert saved.result == {"content": [{"type": "text", "text": "done; AWS key [redacted:aws_access_key]"}]}
    assert saved.error == "upstream said: bad credentials [redacted:github_token]"
    assert writer.health()["redacted_values"] == 4
    await writer.aclose()
    raw = database_bytes(tmp_path)
    assert b"deploy" in raw  # the file is readable as bytes: a secret would show
    for secret in SECRETS:
        assert secret.encode() not in raw


@pytest.mark.anyio
async def test_no_secret_reaches_the_fallback_file(engine: Engine, tmp_path: Path) -> None:
    fallback = tmp_path / "fallback.jsonl"
    writer = AuditWriter(engine, AuditSettings(fallback_file=str(fallback)))
    await writer.start()
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE tool_calls RENAME TO tool_calls_away"))
    writer.submit(row(id="b"))
    await writer.aclose()
    assert writer.diverted == 1
    content = fallback.read_bytes()
    assert b"[redacted:github_token]" in content and b"deploy" in content
    for secret in SECRETS:
        assert secret.encode() not in content


@pytest.mark.anyio
async def test_a_secret_in_a_value_too_large_to_keep_is_cleaned_from_its_preview(
    engine: Engine, tmp_path: Path
) -> None:
    writer = AuditWriter(
        engine,
        AuditSettings(max_arguments_bytes=300, max_result_bytes=300, fallback_file=str(tmp_path / "fb")),
    )
    await writer.start()
    big = {"password": "hunter2hunter2", "note": f"{GITHUB} " + "x" * 5000}
    writer.submit(row(id="c", arguments=big, result={"text": "y" * 250 + " " + GITHUB}))
    await writer.aclose()
    saved = stored(engine)["c"]
    assert saved.arguments_truncated and saved.result_truncated
    assert "hunter2hunter2" not in saved.arguments["preview"] and GITHUB not in saved.arguments["preview"]
    assert GITHUB[:10] not in saved.result["preview"]  # cut mid-token: dropped


def policy_with(**sections: Any) -> GatewayPolicy:
    import yaml

    return load_policy_text(yaml.safe_dump(sections)).policy


@pytest.mark.anyio
async def test_content_logging_switched_off_per_server_and_per_key(engine: Engine, tmp_path: Path) -> None:
    policy = policy_with(
        virtual_keys=[
            {"id": "alice", "secret_sha256": hash_secret("a" * 20)},
            {"id": "quiet", "secret_sha256": hash_secret("q" * 20), "audit_content": False},
        ],
        mcp={
            "servers": [
                {"name": "fs", "command": "x"},
                {"name": "vault", "command": "x", "audit": {"log_content": False}},
                {
                    "name": "tokens",
                    "command": "x",
                    "audit": {
                        "redact_keys": ["account"],
                        "redact_patterns": ["INT-[0-9]+"],
                        "skip_kinds": ["jwt"],
                    },
                },
            ]
        },
    )
    writer = AuditWriter(engine, AuditSettings(fallback_file=str(tmp_path / "fb")), policy=lambda: policy)
    await writer.start()
    writer.submit(row(id="vault", server="vault", error="upstream said: no"))
    writer.submit(row(id="quiet", key_id="quiet"))
    writer.submit(row(id="quiet-unknown", key_id="quiet", server=None, tool=None, result=None))
    writer.submit(
        row(id="tokens", server="tokens", arguments={"account": "42", "sample": JWT, "ref": "INT-77"})
    )
    writer.submit(row(id="plain"))
    await writer.aclose()
    rows = stored(engine)
    vault = rows["vault"]
    assert (
        vault.arguments
        == vault.result
        == {"_not_logged": "not logged: mcp.servers[vault].audit.log_content is false"}
    )
    assert vault.status == "ok" and vault.tool == "run" and vault.error == "upstream said: no"
    assert rows["quiet"].arguments == {
        "_not_logged": "not logged: virtual key 'quiet' has audit_content false"
    }
    assert rows["quiet-unknown"].arguments["_not_logged"].startswith("not logged: virtual key 'quiet'")
    assert rows["quiet-unknown"].result is None
    assert rows["tokens"].arguments == {
        "account": "[redacted:field]",
        "sample": JWT,
        "ref": "[redacted:pattern]",
    }
    assert rows["plain"].arguments["api_key"] == "[redacted:field]"
    assert writer.health()["content_not_logged"] == 3


@pytest.mark.anyio
async def test_the_rules_follow_a_new_policy(engine: Engine, tmp_path: Path) -> None:
    servers = [{"name": "fs", "command": "x"}]
    current = [policy_with(mcp={"servers": servers})]
    writer = AuditWriter(engine, AuditSettings(fallback_file=str(tmp_path / "fb")), policy=lambda: current[0])
    await writer.start()
    writer.submit(row(id="before"))
    await writer.flush()
    current[0] = policy_with(mcp={"servers": [{**servers[0], "audit": {"log_content": False}}]})
    writer.submit(row(id="after"))
    await writer.aclose()
    rows = stored(engine)
    assert rows["before"].arguments["command"] == "deploy"
    assert "_not_logged" in rows["after"].arguments


def test_the_policy_file_checks_redaction_settings() -> None:
    from policies import ConfigError

    for bad in (
        "mcp: {servers: [{name: a, command: x, audit: {redact_patterns: ['(']}}]}",
        "mcp: {servers: [{name: a, command: x, audit: {redact_patterns: ['a*']}}]}",
        "mcp: {servers: [{name: a, command: x, audit: {skip_kinds: [nope]}}]}",
        "gateway: {audit: {redact_keys: ['']}}",
    ):
        with pytest.raises(ConfigError):
            load_policy_text(bad)


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_secret_passed_to_a_tool_reaches_the_tool_but_not_the_audit_log(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    config = {
        "virtual_keys": [{"id": "alice", "secret_env": "TEST_KEY_ALICE"}],
        "mcp": {"servers": [upstream_stdio("alpha")], "virtual_key_permissions": {"alice": "*"}},
    }
    said = f"deploy with password=hunter2-{uuid.uuid4().hex[:8]} and {GITHUB}"
    async with run_gateway(config, tmp_path) as gw:
        async with mcp_client(gw.url, keys_env["TEST_KEY_ALICE"]) as client:
            result = await client.call_tool("alpha__echo", {"text": said})
        assert result.content[0].text == said  # type: ignore[union-attr]  # the tool got the real thing
        calls = await gw.flushed_calls()
    assert len(calls) == 1
    stored_text = orjson.dumps([calls[0].arguments, calls[0].result]).decode()
    assert "hunter2" not in stored_text and GITHUB not in stored_text
    assert "[redacted:assignment]" in stored_text and "[redacted:github_token]" in stored_text
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("gateway.db*"))
    assert GITHUB.encode() not in raw and b"hunter2" not in raw
