"""What a reload compares: the diff between two policies, and the settings only a restart changes."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml

from policies import ConfigError, GatewayPolicy, load_policy_text
from policies.changes import (
    RESTART_ONLY,
    describe,
    diff_policies,
    keep_restart_settings,
    server_needs_restart,
    summarise,
)
from policies.yaml_source import parse_yaml

BASE: dict[str, Any] = {
    "gateway": {"port": 8080, "max_body_bytes": 4096},
    "teams": [{"name": "a"}, {"name": "b", "rate_limit": {"requests_per_minute": 10}}],
    "virtual_keys": [
        {"id": "k1", "team": "a"},
        {"id": "k2", "team": "b", "rate_limit": {"tool_calls_per_minute": 5}},
    ],
    "mcp": {
        "servers": [
            {"name": "fs", "command": "fs-server", "allowed_tools": ["read_*"]},
            {"name": "web", "url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer SECRET-1"}},
        ],
        "team_permissions": {"a": ["fs"], "b": "*"},
    },
    "providers": [{"name": "p", "kind": "anthropic", "base_url": "http://127.0.0.1:9"}],
    "routes": [{"match": "claude-*", "provider": "p"}],
    "budgets": {"teams": [{"name": "a", "monthly_limit_usd": 10}]},
}


def load(doc: dict[str, Any]) -> GatewayPolicy:
    return load_policy_text(yaml.safe_dump(doc)).policy


def changed(**edits: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(yaml.safe_dump(BASE))
    for path, value in edits.items():
        *parents, last = path.split("__")
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return doc


def test_an_identical_policy_is_no_change() -> None:
    assert not diff_policies(load(BASE), load(BASE))
    reordered = changed(virtual_keys=list(reversed(BASE["virtual_keys"])))
    assert not diff_policies(load(BASE), load(reordered)), "named lists are compared by name"


def test_changes_are_named_by_what_they_affect() -> None:
    doc = changed(
        virtual_keys=[
            {"id": "k2", "team": "b", "rate_limit": {"tool_calls_per_minute": 6}},
            {"id": "k3", "team": "a", "allowed_models": ["claude-*"]},
        ],
        teams__1={"name": "b", "rate_limit": {"requests_per_minute": 20}},
        mcp__team_permissions={"a": ["fs", "web"], "b": "*"},
        budgets={"teams": [{"name": "a", "monthly_limit_usd": 20}]},
        routes=[{"match": "claude-*", "provider": "p", "model": "claude-x"}],
        gateway={"port": 9090, "max_body_bytes": 8192},
    )
    changes = diff_policies(load(BASE), load(doc))
    assert changes.keys.added == ["k3"] and changes.keys.removed == ["k1"] and changes.keys.changed == ["k2"]
    assert changes.teams.changed == ["b"]
    assert changes.permissions == ["team:a"]
    assert changes.limits == ["key:k2", "team:b"]
    assert changes.budgets == ["budgets.teams[a]"]
    assert changes.routes
    assert changes.settings == ["gateway.max_body_bytes"]
    assert changes.restart_required == ["gateway.port"]
    summary = summarise(changes, {"servers": {}})
    assert "servers" not in summary
    assert summary["keys"] == {"added": ["k3"], "removed": ["k1"], "changed": ["k2"]}
    line = describe(summary)
    assert "keys (added: k3; removed: k1; changed: k2)" in line and "restart_required: gateway.port" in line


def test_the_summary_never_holds_a_value() -> None:
    doc = changed(
        mcp__servers__1={
            "name": "web",
            "url": "http://127.0.0.1:9/mcp",
            "headers": {"Authorization": "SECRET-2"},
        }
    )
    changes = diff_policies(load(BASE), load(doc))
    assert changes.paths == ["mcp.servers[web].headers.Authorization"]
    assert "SECRET" not in repr(summarise(changes)) + describe(summarise(changes))


def test_restart_only_settings_keep_their_old_values() -> None:
    old = load(BASE)
    doc = changed(gateway={"port": 9090, "max_body_bytes": 8192, "audit": {"batch_size": 7}})
    doc["budgets"]["alert_webhook"] = "http://127.0.0.1:1/hook"
    new = load(doc)
    kept, paths = keep_restart_settings(old, new)
    assert paths == ["gateway.port", "gateway.audit", "budgets.alert_webhook"]
    assert kept.gateway.port == 8080 and kept.gateway.audit == old.gateway.audit
    assert kept.budgets.alert_webhook is None
    assert kept.gateway.max_body_bytes == 8192, "a live setting is applied"
    assert keep_restart_settings(old, old) == (old, [])
    for section, name in RESTART_ONLY:
        assert name in type(getattr(old, section)).model_fields, (section, name)


def test_which_server_changes_restart_it() -> None:
    policy = load(BASE)
    fs = policy.mcp.servers[0]
    assert not server_needs_restart(fs, fs.model_copy(update={"allowed_tools": ["*"], "timeout_seconds": 5}))
    assert server_needs_restart(fs, fs.model_copy(update={"args": ["--root", "/"]}))
    assert server_needs_restart(fs, fs.model_copy(update={"health_interval_seconds": 1}))


def test_yaml_merge_keys_are_not_duplicates() -> None:
    """The document is parsed once: lines are read before constructing the data, which flattens merge
    keys into the node tree (read afterwards, an override of a merged key looked like a duplicate)."""
    text = textwrap.dedent(
        """
        base: &limits {requests_per_minute: 5, tool_calls_per_minute: 7}
        x:
          <<: *limits
          requests_per_minute: 9
        """
    )
    document = parse_yaml(text, "p.yaml")
    assert document.data["x"] == {"requests_per_minute": 9, "tool_calls_per_minute": 7}
    assert document.lines[("x", "requests_per_minute")] == 5


@pytest.mark.parametrize(
    ("text", "line"), [("a: 1\nb: [1,\n", 3), ("a: 1\na: 2\n", 2), ("a: 1\n---\nb: 2\n", 2)]
)
def test_yaml_errors_still_name_their_line(text: str, line: int) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "p.yaml")
    assert caught.value.issues[0].line == line, caught.value.render()
