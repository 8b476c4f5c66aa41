"""The HTTP client fields of MCP servers and providers (http_client, http2, tls) and the headers they send:
what no client could carry is refused when the file is loaded, so `check` refuses it as `serve` would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway_app.cli import main
from policies import ConfigError, load_policy_text
from tests.conftest import free_port
from tests.fixtures.tls import TestCA


def server(**fields: str) -> str:
    extra = "".join(f"\n      {name}: {value}" for name, value in fields.items())
    return f"mcp:\n  servers:\n    - name: web\n      url: https://mcp.example.com/mcp{extra}\n"


def provider(**fields: str) -> str:
    extra = "".join(f"\n    {name}: {value}" for name, value in fields.items())
    return f"providers:\n  - name: up\n    kind: anthropic\n    base_url: https://api.example.com{extra}\n"


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as refused:
        load_policy_text(text, "gw.yaml")
    return str(refused.value)


def test_valid_fields_load(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    client = ca.issue("client", ("gateway",), client=True)
    tls = f"{{ca_bundle: {ca.cert_path}, client_cert: {client.cert}, client_key: {client.key}}}"
    policy = load_policy_text(server(http_client="httpx", http2="true", tls=tls) + provider(tls=tls)).policy
    web = policy.mcp.servers[0]
    assert web.transport == "http" and web.tls is not None
    assert (web.http_client, web.http2, web.tls.client_key) == ("httpx", True, str(client.key))
    assert policy.providers[0].tls is not None and policy.providers[0].http_client == "auto"
    bundled = tmp_path / "bundled.pem"  # certificate and key in one file
    bundled.write_bytes(client.cert.read_bytes() + client.key.read_bytes())
    load_policy_text(provider(tls=f"{{client_cert: {bundled}}}"))


@pytest.mark.parametrize("make", [server, provider])
def test_combinations_no_client_can_carry(make: Callable[..., str], tmp_path: Path) -> None:
    assert "http2 needs the httpx client" in refusal(make(http_client="fast", http2="true"))
    assert "http_client: Input should be 'auto', 'fast' or 'httpx'" in refusal(make(http_client="h3"))
    assert "http2 is negotiated during TLS" in refusal(make(http2="true").replace("https://", "http://"))
    ca = TestCA(tmp_path)
    tls = f"{{ca_bundle: {ca.cert_path}}}"
    assert "tls applies to https:// URLs only" in refusal(make(tls=tls).replace("https://", "http://"))


def test_tls_files_are_checked_when_the_file_is_loaded(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    client = ca.issue("client", ("gateway",), client=True)
    other = ca.issue("other", ("gateway",), client=True)
    missing = tmp_path / "nope.pem"
    assert f"ca_bundle '{missing}': no such file" in refusal(provider(tls=f"{{ca_bundle: {missing}}}"))
    assert "no such file" in refusal(provider(tls=f"{{ca_bundle: {tmp_path}}}"))  # a directory
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    assert "holds no usable PEM certificate" in refusal(provider(tls=f"{{ca_bundle: {not_pem}}}"))
    assert "client_key needs client_cert" in refusal(provider(tls=f"{{client_key: {client.key}}}"))
    mismatch = refusal(provider(tls=f"{{client_cert: {client.cert}, client_key: {other.key}}}"))
    assert "cannot be loaded" in mismatch and "does not match" in mismatch
    assert "cannot be loaded" in refusal(provider(tls=f"{{client_cert: {client.cert}}}"))  # no key anywhere
    assert "unknown field" in refusal(provider(tls="{ca_file: x}"))


@pytest.mark.parametrize("make", [server, provider])
def test_headers_that_could_inject_are_refused(make: Callable[..., str]) -> None:
    assert "contains '\\r'" in refusal(make(headers='{X-Token: "a\\r\\nX-Evil: 1"}'))
    assert "contains '\\x00'" in refusal(make(headers='{X-Token: "a\\0b"}'))
    assert "not a valid HTTP field name" in refusal(make(headers='{"X Token": a}'))
    assert "set by the HTTP client itself" in refusal(make(headers="{Host: other.example}"))
    assert "outside Latin-1" in refusal(make(headers="{X-Name: 工具}"))


@pytest.mark.slow
def test_check_and_serve_refuse_a_missing_ca_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(provider(tls="{ca_bundle: certs/company-ca.pem}"))
    monkeypatch.chdir(tmp_path)
    expected = f"{config}:5: providers[0].tls.ca_bundle: ca_bundle 'certs/company-ca.pem': no such file"
    with pytest.raises(SystemExit) as exited:
        main(["check", "--config", str(config)])
    assert exited.value.code not in (0, None)
    assert expected in capsys.readouterr().err
    served = subprocess.run(
        [sys.executable, "-m", "gateway_app", "serve", "--config", str(config), "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert served.returncode != 0 and expected in served.stderr
