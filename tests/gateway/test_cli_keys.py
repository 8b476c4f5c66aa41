"""``mcp-gateway keys ...`` and ``mcp-gateway onboard``: flags in the policy file's shapes, JSON
output, the secret printed once, and the onboarding kit (its model choice and its private files)."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway_app.cli import build_parser, main
from gateway_app.onboarding import OnboardingError, choose_model
from policies import Principal, load_policy_text

MODELS_POLICY: dict[str, Any] = {
    "teams": [{"name": "eng"}, {"name": "web", "allowed_models": ["claude-sonnet-*"]}],
    "mcp": {"servers": [{"name": "fs", "command": "true"}], "tool_naming": {"client_server_name": "corp-gw"}},
    "providers": [
        {
            "name": "anth",
            "kind": "anthropic",
            "base_url": "http://127.0.0.1:9",
            "models": ["claude-sonnet-4-5"],
        },
        {
            "name": "oai",
            "kind": "openai-compatible",
            "base_url": "http://127.0.0.1:9/v1",
            "models": ["gpt-4o"],
        },
    ],
    "routes": [
        {"match": "fast", "provider": "anth", "model": "claude-haiku-4-5"},
        {"match": "claude-haiku-4-5", "provider": "anth"},
        {"match": "claude-*", "provider": "anth"},
        {"match": "gpt-*", "provider": "oai"},
    ],
}


def write_policy(tmp_path: Path, policy: dict[str, Any] | None = None) -> str:
    path = tmp_path / "policy.yaml"
    data = {
        **(policy or MODELS_POLICY),
        "gateway": {"database_url": f"sqlite:///{tmp_path / 'g.db'}", "port": 8443},
    }
    path.write_text(yaml.safe_dump(data))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_flag_has_help() -> None:
    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    walk(commands.choices["keys"], "keys")
    walk(commands.choices["onboard"], "onboard")
    assert missing == []


def test_create_list_show_update_rotate_revoke_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_policy(tmp_path)
    code, out, _ = run(
        capsys,
        "keys", "create", "vk_sam", "--config", config, "--json",
        "--name", "Sam", "--team", "eng", "--allowed-models", "claude-haiku-*, fast",
        "--rate-limit", "requests_per_minute=30,tool_calls_per_minute=10",
        "--budget", "{daily_limit_usd: 5, alert_threshold: 0.8}",
        "--tools", "{fs: [read_file, 'list_*']}", "--expires-in", "30d",
    )  # fmt: skip
    assert code == 0
    created = json.loads(out)
    secret = created["secret"]
    assert secret.startswith("mgw_")
    assert created["settings"] == {
        "name": "Sam",
        "team": "eng",
        "allowed_models": ["claude-haiku-*", "fast"],
        "rate_limit": {"requests_per_minute": 30, "tool_calls_per_minute": 10},
        "budget": {"daily_limit_usd": 5.0, "alert_threshold": 0.8},
        "tool_permissions": {"fs": ["read_file", "list_*"]},
        "expires_at": created["settings"]["expires_at"],
    }
    code, out, _ = run(capsys, "keys", "show", "vk_sam", "--config", config, "--json")
    shown = json.loads(out)
    assert code == 0 and secret not in out
    assert shown["settings"] == created["settings"] and shown["declared_in_file"] is False
    assert [s["prefix"] for s in shown["secrets"]] == [secret[:10]]

    code, out, _ = run(
        capsys, "keys", "update", "vk_sam", "--config", config, "--json", "--unset", "budget", "--tools", "*"
    )
    assert code == 0
    updated = json.loads(out)["settings"]
    assert (updated["budget"], updated["tool_permissions"], updated["name"]) == (None, "*", "Sam")

    code, out, _ = run(capsys, "keys", "rotate", "vk_sam", "--config", config, "--json", "--grace", "0")
    rotated = json.loads(out)
    assert code == 0 and rotated["secret"] not in (secret, None)
    assert [s["state"] for s in rotated["secrets"]] == ["active", "replaced"]

    code, out, _ = run(capsys, "keys", "list", "--config", config, "--json")
    assert [k["key_id"] for k in json.loads(out)["keys"]] == ["vk_sam"] and secret not in out
    code, out, _ = run(capsys, "keys", "revoke", "vk_sam", "--config", config, "--json")
    assert code == 0 and json.loads(out)["database_secrets_revoked"] == 2
    assert json.loads(run(capsys, "keys", "list", "--config", config, "--json")[1])["keys"] == []
    assert run(capsys, "keys", "show", "vk_sam", "--config", config)[0] == 0


def test_tables_and_sentences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_policy(tmp_path)
    code, out, _ = run(capsys, "keys", "create", "vk_sam", "--team", "eng", "--config", config)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Created key 'vk_sam' (team eng, secret prefix mgw_") and lines[1].startswith(
        "mgw_"
    )
    code, out, _ = run(capsys, "keys", "rotate", "vk_sam", "--grace", "2h", "--config", config)
    assert "the replaced secret works until" in out
    code, out, _ = run(capsys, "keys", "list", "--config", config)
    assert code == 0 and "vk_sam" in out and "eng" in out and "active (old secret until" in out
    code, out, _ = run(capsys, "keys", "show", "vk_sam", "--config", config)
    assert "allowed_models" in out and "(inherited)" in out and "grace" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--rate-limit", "requests_per_minute=lots"],
            "rate_limit.requests_per_minute: Input should be a valid integer",
        ),
        (["--budget", "daily_limit_usd"], "budget: Input should be a valid dictionary"),
        (["--tools", "fs,tickets"], "names servers the policy does not define: tickets"),
        (["--team", "sales"], "team 'sales' is not declared under teams"),
        (["--expires-in", "1d", "--expires-at", "2030-01-01"], "give --expires-in or --expires-at, not both"),
        (["--rate-limit", "{requests_per_minute: [}"], "--rate-limit: not valid YAML"),
    ],
)
def test_bad_values_are_refused_with_a_message_and_nothing_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    config = write_policy(tmp_path)
    assert run(capsys, "keys", "create", "vk_other", "--config", config)[0] == 0
    code, out, err = run(capsys, "keys", "create", "vk_x", "--config", config, *args)
    assert code == 2 and message in err and "mgw_" not in out
    assert run(capsys, "keys", "show", "vk_x", "--config", config)[0] == 1


def test_a_bad_duration_is_an_argument_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["keys", "rotate", "vk_x", "--grace", "soon", "--config", write_policy(tmp_path)])
    assert exited.value.code == 2
    assert "'soon' is not a duration such as 90d" in capsys.readouterr().err


def test_create_with_onboard_writes_private_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_policy(tmp_path)
    kit = tmp_path / "kit"
    code, out, err = run(
        capsys,
        "keys",
        "create",
        "vk_web",
        "--team",
        "web",
        "--config",
        config,
        "--onboard",
        "--write",
        str(kit),
    )
    assert code == 0, err
    secret = out.splitlines()[1]
    script, settings, readme = kit / "claude-mcp-add.sh", kit / "settings.json", kit / "README-onboarding.txt"
    for private in (script, settings):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert secret not in readme.read_text() and "settings.local.json" in readme.read_text()
    assert script.read_text().splitlines()[-1] == (
        f"claude mcp add --transport http --scope user corp-gw http://127.0.0.1:8443/mcp "
        f'--header "Authorization: Bearer {secret}"'
    )
    assert json.loads(settings.read_text()) == {
        "env": {
            "ANTHROPIC_BASE_URL": "http://127.0.0.1:8443",
            "ANTHROPIC_AUTH_TOKEN": secret,
            "ANTHROPIC_MODEL": "claude-sonnet-4-5",  # the team's glob, expanded against a provider's models
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-sonnet-4-5",
            "ANTHROPIC_SMALL_FAST_MODEL": "claude-sonnet-4-5",
        }
    }
    assert secret not in err


def test_onboard_takes_the_secret_from_the_environment_and_checks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_policy(tmp_path)
    code, out, _ = run(
        capsys, "keys", "create", "vk_dev", "--team", "eng", "--allowed-models", "fast", "--config", config
    )
    secret = out.splitlines()[1]
    monkeypatch.delenv("MCPGW_ONBOARD_SECRET", raising=False)
    code, _, err = run(capsys, "onboard", "--key", "vk_dev", "--config", config)
    assert code == 2 and "onboarding needs the key's secret: set MCPGW_ONBOARD_SECRET" in err
    monkeypatch.setenv("MCPGW_ONBOARD_SECRET", "mgw_someone_elses")
    code, _, err = run(capsys, "onboard", "--key", "vk_dev", "--config", config)
    assert code == 2 and "not a working secret of key 'vk_dev'" in err
    monkeypatch.setenv("MCPGW_ONBOARD_SECRET", secret)
    code, out, _ = run(
        capsys, "onboard", "--key", "vk_dev", "--config", config, "--gateway-url", "https://gw.corp/"
    )
    assert code == 0
    assert (
        f'claude mcp add --transport http --scope user corp-gw https://gw.corp/mcp --header "Authorization: Bearer {secret}"'
        in out
    )
    assert '"ANTHROPIC_MODEL": "fast"' in out and '"ANTHROPIC_BASE_URL": "https://gw.corp"' in out
    code, out, _ = run(
        capsys, "onboard", "--key", "vk_dev", "--config", config, "--json", "--model", "claude-sonnet-4-5"
    )
    assert code == 2  # the key may use only "fast"
    assert run(capsys, "onboard", "--key", "vk_nobody", "--config", config)[0] == 1


def principal(team: str | None = "eng") -> Principal:
    return Principal("vk", "vk", team, "database")


@pytest.mark.parametrize(
    ("own", "team", "model", "small"),
    [
        (["claude-haiku-*", "fast"], "eng", "fast", "claude-haiku-4-5"),  # exact names first
        (["claude-s*"], "eng", "claude-sonnet-4-5", "claude-sonnet-4-5"),  # a glob, from a provider's models
        (None, "web", "claude-sonnet-4-5", "claude-sonnet-4-5"),  # the team's list
        (["gpt-*"], "eng", None, None),  # only an OpenAI-compatible route: nothing Claude Code can use
        (["claude-opus-4-8"], "eng", "claude-opus-4-8", "claude-opus-4-8"),  # an exact name routed by a glob
        (None, "eng", None, None),  # any routed model: Claude Code's defaults
    ],
)
def test_the_model_is_one_the_key_may_use(
    own: list[str] | None, team: str, model: str | None, small: str | None
) -> None:
    policy = load_policy_text(yaml.safe_dump(MODELS_POLICY)).policy
    choice = choose_model(policy, principal(team), own)
    assert (choice.model, choice.small_model) == (model, small)
    if own == ["gpt-*"]:
        assert "give one with --model" in choice.explanation


def test_a_model_the_key_may_not_use_is_refused() -> None:
    policy = load_policy_text(yaml.safe_dump(MODELS_POLICY)).policy
    with pytest.raises(OnboardingError, match="'claude-sonnet-4-5' is not one this key may use"):
        choose_model(policy, principal(), ["claude-haiku-*"], "claude-sonnet-4-5")
    assert (
        choose_model(policy, principal(), ["claude-haiku-*"], "claude-haiku-4-5").model == "claude-haiku-4-5"
    )
