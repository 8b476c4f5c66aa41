"""Declaring a server on the older HTTP+SSE transport: `transport: sse` with `url` at its event stream.
What cannot work is refused when the file is loaded, so `check` refuses it as `serve` would."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_app.cli import main
from policies import ConfigError, load_policy_text
from policies.servers import HttpServerConfig, SseServerConfig, StdioServerConfig


def servers(*entries: str) -> str:
    return "mcp:\n  servers:\n" + "".join(f"    - {entry}\n" for entry in entries)


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as refused:
        load_policy_text(text, "gw.yaml")
    return str(refused.value)


def test_the_three_kinds_side_by_side() -> None:
    policy = load_policy_text(
        servers(
            "{name: legacy, transport: sse, url: 'https://mcp.example.com/sse', headers: {Authorization: Bearer t}}",
            "{name: modern, url: 'https://mcp.example.com/mcp'}",
            "{name: local, command: python}",
        )
    ).policy
    legacy, modern, local = policy.mcp.servers
    assert isinstance(legacy, SseServerConfig) and legacy.transport == "sse"
    assert (legacy.url, legacy.headers, legacy.http_client) == (
        "https://mcp.example.com/sse",
        {"Authorization": "Bearer t"},
        "auto",
    )
    assert isinstance(modern, HttpServerConfig) and isinstance(local, StdioServerConfig)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{name: s, transport: sse}", "gw.yaml:3: mcp.servers[0].url: Field required"),
        ("{name: s, transport: sse, url: 'ftp://h/sse'}", "url must be an http:// or https:// URL"),
        (
            "{name: s, transport: sse, url: 'http://h/sse', protocol: auto}",
            "mcp.servers[0].protocol: unknown field 'protocol'",
        ),
        (
            "{name: s, transport: sse, url: 'http://h/sse', command: x}",
            "mcp.servers[0].command: unknown field",
        ),
        (
            "{name: s, transport: sse, url: 'http://h/sse', http2: true}",
            "http2 is negotiated during TLS: it needs an https:// URL",
        ),
        (
            "{name: s, transport: sse, url: 'http://h/sse', headers: {'X-A': \"a\\r\\nb\"}}",
            "could inject headers",
        ),
        (
            "{name: s, url: 'https://h/sse', protocol: '2024-11-05'}",
            "2024-11-05 is the older HTTP+SSE transport: declare the server with `transport: sse`",
        ),
        (
            "{name: s, transport: websocket, url: 'wss://h/'}",
            "mcp.servers[0].transport: unknown transport 'websocket': stdio, http (streamable HTTP) or sse",
        ),
    ],
)
def test_what_cannot_work_is_refused(entry: str, problem: str) -> None:
    assert problem in refusal(servers(entry))


def test_check_accepts_and_refuses_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(servers("{name: legacy, transport: sse, url: 'http://127.0.0.1:9/sse'}"))
    assert main(["check", "--config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(servers("{name: legacy, transport: sse, url: 'http://127.0.0.1:9/sse', protocol: auto}"))
    with pytest.raises(SystemExit) as refused:  # `serve` loads the file through the same `_load`
        main(["check", "--config", str(bad)])
    assert refused.value.code == 2
    assert "bad.yaml:3: mcp.servers[0].protocol: unknown field 'protocol'" in capsys.readouterr().err
