"""The policy file: shapes users write, errors that point at the line, decisions over it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from policies import ConfigError, Principal, load_policy, load_policy_text
from policies.catalogue import build_catalogue
from policies.interpolation import UnsetVariable, expand
from policies.naming import NamingRules, PrefixMode, assign_names
from policies.permissions import ToolGrant

REPO = Path(__file__).resolve().parents[2]
SEED = """
virtual_keys:
  - id: "vk_team_frontend"
    name: "Frontend Team"
    provider_config: "anthropic_prod"
    allowed_models:
      - "claude-sonnet-4-20250514"
    rate_limit:
      requests_per_minute: 60
      tokens_per_minute: 100000
  - id: "vk_dev_rahul"
    name: "Rahul - Backend"
    provider_config: "anthropic_prod"
    allowed_models: ["claude-sonnet-4-20250514"]
    rate_limit:
      requests_per_minute: 30
      tokens_per_minute: 50000
      concurrent_requests: 3
budgets:
  org_level:
    monthly_limit_usd: 10000
  teams:
    - name: "frontend"
      monthly_limit_usd: 2000
      alert_threshold: 0.8
  virtual_key_overrides:
    - id: "vk_dev_rahul"
      daily_limit_usd: 50
mcp:
  servers:
    - name: "filesystem"
      url: "http://localhost:9001"
      allowed_tools: ["read_file", "write_file", "list_directory"]
    - name: "database"
      url: "http://localhost:9002"
      allowed_tools: ["query", "describe_table"]
    - name: "deployment"
      url: "http://localhost:9003"
      allowed_tools: ["deploy_staging", "rollback"]
  virtual_key_permissions:
    "vk_team_frontend":
      - "filesystem"
    "vk_team_backend":
      - "filesystem"
      - "database"
    "vk_team_platform":
      - "filesystem"
      - "database"
      - "deployment"
"""


def load(text: str) -> object:
    return load_policy_text(textwrap.dedent(text), "policy.yaml")


def test_the_seed_shapes_are_accepted() -> None:
    loaded = load_policy_text(SEED, "seed.yaml")
    policy = loaded.policy
    assert [k.id for k in policy.virtual_keys] == ["vk_team_frontend", "vk_dev_rahul"]
    assert policy.budgets.org is not None and policy.budgets.org.monthly_limit_usd == 10000
    assert policy.budgets.keys[0].daily_limit_usd == 50
    assert policy.virtual_keys[1].rate_limit is not None
    assert policy.virtual_keys[1].rate_limit.concurrent_requests == 3
    # Keys the permissions name but the file does not define are allowed (database keys), with a warning.
    assert any("vk_team_platform" in w for w in loaded.warnings)
    assert any("team 'frontend' is implied" in w for w in loaded.warnings)


@pytest.mark.parametrize("path", sorted((REPO / "examples").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_loads(path: Path) -> None:
    loaded = load_policy(path)
    assert loaded.policy.mcp.servers or loaded.policy.providers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """
            virtual_keys:
              - id: k
                rate_limit:
                  requests_per_minut: 5
            """,
            "policy.yaml:5: virtual_keys[0].rate_limit.requests_per_minut: unknown field 'requests_per_minut'",
        ),
        (
            """
            mcp:
              servers:
                - name: fs
                  command: x
                  url: http://y
            """,
            "policy.yaml:4: mcp.servers[0]: a server needs exactly one of `command`",
        ),
        (
            """
            budgets:
              teams:
                - name: a
                  monthly_limit_usd: -3
            """,
            "policy.yaml:5: budgets.teams[0].monthly_limit_usd: Input should be greater than or equal to 0",
        ),
        (
            """
            teams: [{name: eng}]
            virtual_keys:
              - {id: k, team: engg}
            """,
            "policy.yaml:4: virtual_keys[0].team: team 'engg' is not defined under teams",
        ),
        (
            """
            mcp:
              servers: [{name: fs, command: x}]
              virtual_key_permissions:
                k: [fs, db]
            """,
            "policy.yaml:5: mcp.virtual_key_permissions.k: server 'db' is not defined under mcp.servers",
        ),
        (
            """
            virtual_keys:
              - id: a
              - id: a
            """,
            "virtual key 'a' is defined more than once",
        ),
        (
            """
            gateway:
              port: 8080
              port: 9090
            """,
            "policy.yaml:4: gateway.port: duplicate key 'port' (first defined on line 3)",
        ),
        ("virtual_keys: [\n", "policy.yaml:2: invalid YAML"),
        ("- just\n- a list\n", "the policy must be a YAML mapping"),
        (
            """
            virtual_keys:
              - {id: k, secret_sha256: abc}
            """,
            "secret_sha256 must be 64 hex characters",
        ),
        (
            """
            mcp:
              tool_naming: {separator: "__"}
              servers: [{name: my__fs, command: x}]
            """,
            "server name 'my__fs' contains the tool name separator '__'",
        ),
        (
            """
            mcp:
              tool_naming: {prefix: never}
              servers:
                - {name: a, command: x, allowed_tools: [read_file]}
                - {name: b, command: y, allowed_tools: [read_file, "list_*"]}
            """,
            "with prefix 'never', tool 'read_file' is exposed by servers a, b",
        ),
    ],
)
def test_errors_name_the_file_the_line_and_the_reason(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(text)
    assert expected in str(error.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_policy(tmp_path / "nope.yaml")
    assert "nope.yaml: cannot read file" in str(error.value)


def test_key_permissions_replace_team_permissions_and_default_is_deny() -> None:
    policy = load_policy_text(
        textwrap.dedent(
            """
            teams: [{name: backend}, {name: ops}]
            virtual_keys:
              - {id: team_key, team: backend}
              - {id: dev, team: backend}
              - {id: lonely}
            mcp:
              servers: [{name: fs, command: x}, {name: db, command: y}]
              team_permissions:
                backend: [fs, db]
              virtual_key_permissions:
                dev: {fs: [read_file, "list_*"]}
            """
        )
    ).policy
    team_key = policy.tool_grant(Principal("team_key", "t", "backend", "file"))
    dev = policy.tool_grant(Principal("dev", "d", "backend", "file"))
    lonely = policy.tool_grant(Principal("lonely", "l", None, "file"))
    assert team_key.source == "team:backend" and team_key.allows("db", "query")
    assert dev.source == "key:dev"
    assert dev.allows("fs", "read_file") and dev.allows("fs", "list_directory")
    assert not dev.allows("fs", "write_file") and not dev.allows("db", "query")
    assert lonely.is_empty and not lonely.allows("fs", "read_file")


def test_grant_shapes() -> None:
    everything = ToolGrant.from_spec("*", "key:x")
    assert everything.allows("any", "tool")
    servers = ToolGrant.from_spec(["fs"], "key:x")
    assert servers.allows("fs", "anything") and not servers.allows("db", "q")
    globs = ToolGrant.from_spec({"fs": ["read_*"], "db": "*"}, "key:x")
    assert (
        globs.allows("fs", "read_file") and not globs.allows("fs", "write_file") and globs.allows("db", "q")
    )
    # Globs are case-sensitive: a tool named differently is a different tool.
    assert not globs.allows("fs", "READ_FILE")


def test_naming_modes_and_collisions() -> None:
    tools = {"fs": ["read_file", "list"], "db": ["query", "list"]}
    always = assign_names(tools, NamingRules())
    assert always.names[("fs", "list")] == "fs__list" and not always.collisions
    on_conflict = assign_names(tools, NamingRules(prefix=PrefixMode.ON_CONFLICT))
    assert on_conflict.names[("fs", "read_file")] == "read_file"
    assert on_conflict.names[("db", "list")] == "db__list"
    never = assign_names(tools, NamingRules(prefix=PrefixMode.NEVER))
    assert [c.exposed_name for c in never.collisions] == ["list"]
    assert ("fs", "list") not in never.names and never.names[("db", "query")] == "query"
    assert (
        "claimed by tool 'list' of server 'db', tool 'list' of server 'fs'" in never.collisions[0].describe()
    )


def test_naming_warnings_for_model_tool_name_rules() -> None:
    long_name = "t" * 60
    result = assign_names({"srv": [long_name, "dotted.name"]}, NamingRules(client_server_name="gateway"))
    assert any("model APIs reject tool names over 64" in w for w in result.warnings)
    assert any("outside [A-Za-z0-9_-]" in w for w in result.warnings)


def test_server_ceiling_hides_tools_from_everyone() -> None:
    index = build_catalogue({"fs": ["read_file", "write_file"]}, {"fs": ["read_*"]}, NamingRules())
    grant = ToolGrant.from_spec("*", "key:k")
    assert [e.exposed_name for e in index.visible(grant)] == ["fs__read_file"]
    assert index.resolve("fs__write_file", grant) is None
    assert index.hidden_by_server_ceiling == {"fs": ["write_file"]}


def test_env_interpolation() -> None:
    env = {"TOKEN": "s3cret"}
    assert expand("Bearer ${TOKEN}", env) == "Bearer s3cret"
    assert expand("${MISSING:-fallback}", env) == "fallback"
    with pytest.raises(UnsetVariable, match="MISSING"):
        expand("${MISSING}", env)
