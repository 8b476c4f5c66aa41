"""One rule for ``${VAR}`` in every string field, applied when the file is loaded."""

from __future__ import annotations

import textwrap

import pytest

from gateway_app.settings import CHECKS
from policies import ConfigError, GatewayPolicy, load_policy_text
from policies.config import validate_document
from policies.interpolation import BadReference, UnsetVariable, expand
from policies.yaml_source import parse_yaml


def load(text: str, env: dict[str, str]) -> GatewayPolicy:
    # The checks the composition root hands the loader (the database URL needs SQLAlchemy).
    return validate_document(parse_yaml(textwrap.dedent(text), "gateway.yaml"), env, CHECKS).policy


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("Bearer ${TOKEN}", "Bearer s3cret"),
        ("${TOKEN}${TOKEN}", "s3crets3cret"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY}", ""),
        ("${TOKEN:-fallback}", "s3cret"),
        ("${MISSING:-}", ""),
        ("${MISSING:-http://h:1/x}", "http://h:1/x"),
        ("$$", "$"),
        ("$${TOKEN}", "${TOKEN}"),
        ("$$${TOKEN}", "$s3cret"),
        ("costs $5 and $HOME", "costs $5 and $HOME"),
        ("trailing $", "trailing $"),
    ],
)
def test_expand(value: str, expected: str) -> None:
    assert expand(value, {"TOKEN": "s3cret", "EMPTY": ""}) == expected


@pytest.mark.parametrize("value", ["${", "${1X}", "${A B}", "x ${unclosed", "${A:default}", "${}"])
def test_a_broken_reference_is_an_error(value: str) -> None:
    with pytest.raises(BadReference, match=r"write \$\$ for a literal"):
        expand(value, {"A": "a"})


def test_an_unset_variable_is_an_error_naming_it() -> None:
    with pytest.raises(UnsetVariable, match=r"MISSING is not set \(write \$\{MISSING:-default\}"):
        expand("${MISSING}", {})


def test_every_string_field_is_expanded_before_validation() -> None:
    env = {
        "DB": "sqlite:///var/gw.db",
        "PORT": "9123",
        "TEAM": "platform",
        "TOOL": "read_file",
        "ENABLED": "false",
        "RPM": "42",
        "SRV_URL": "https://mcp.example.com/mcp",
    }
    policy = load(
        """
        gateway:
          port: ${PORT}
          database_url: ${DB}
          allowed_hosts: ["${HOST:-gw.internal}"]
        teams: [{name: "${TEAM}", description: "team ${TEAM}"}]
        virtual_keys:
          - {id: k, team: "${TEAM}", name: "${NAME:-Key}", rate_limit: {requests_per_minute: "${RPM}"}}
        mcp:
          instructions: "Costs $$5, not ${PRICE:-5}"
          servers:
            - name: fs
              command: python
              args: ["--root", "$${NOT_EXPANDED}"]
              enabled: ${ENABLED}
              allowed_tools: ["${TOOL}"]
            - {name: web, url: "${SRV_URL}"}
          team_permissions:
            platform: ["fs", "${SECOND:-web}"]
        """,
        env,
    )
    assert policy.gateway.port == 9123
    assert policy.gateway.database_url == "sqlite:///var/gw.db"
    assert policy.gateway.allowed_hosts == ["gw.internal"]
    assert policy.teams[0].name == "platform" and policy.teams[0].description == "team platform"
    key = policy.virtual_keys[0]
    assert key.team == "platform" and key.name == "Key"
    assert key.rate_limit is not None and key.rate_limit.requests_per_minute == 42
    assert policy.mcp.instructions == "Costs $5, not 5"
    fs, web = policy.mcp.servers
    assert fs.enabled is False and fs.allowed_tools == ["read_file"]
    assert getattr(fs, "args", None) == ["--root", "${NOT_EXPANDED}"]
    assert getattr(web, "url", None) == "https://mcp.example.com/mcp"
    assert policy.mcp.team_permissions == {"platform": ["fs", "web"]}


def test_mapping_keys_are_not_expanded() -> None:
    policy = load(
        """
        mcp:
          servers: [{name: fs, command: python, env: {"${NAME}": "${VALUE}"}}]
        """,
        {"NAME": "X", "VALUE": "v"},
    )
    assert getattr(policy.mcp.servers[0], "env", None) == {"${NAME}": "v"}


def test_every_unset_variable_is_reported_with_its_line_and_path() -> None:
    with pytest.raises(ConfigError) as error:
        load(
            """
            gateway:
              database_url: ${DB_URL}
            providers:
              - name: p
                kind: anthropic
                base_url: https://api.example.com
                headers: {X-Token: "${TOKEN}"}
            """,
            {},
        )
    text = error.value.render()
    assert "gateway.yaml:3: gateway.database_url: environment variable DB_URL is not set" in text
    assert "gateway.yaml:8: providers[0].headers.X-Token: environment variable TOKEN is not set" in text


def test_an_expanded_value_is_validated_like_a_written_one() -> None:
    with pytest.raises(ConfigError) as error:
        load("gateway: {database_url: '${DB_URL}'}\n", {"DB_URL": "not a url"})
    assert "gateway.yaml:1: gateway.database_url: not a database URL SQLAlchemy can parse" in str(error.value)
    with pytest.raises(ConfigError, match=r"gateway\.port: Input should be a valid integer"):
        load("gateway: {port: '${PORT:-80x}'}\n", {})


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPGW_TEST_INSTRUCTIONS", "from the environment")
    loaded = load_policy_text("mcp: {instructions: '${MCPGW_TEST_INSTRUCTIONS}'}\n")
    assert loaded.policy.mcp.instructions == "from the environment"
