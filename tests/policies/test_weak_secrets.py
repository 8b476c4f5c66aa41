"""Secrets an operator put in the environment that are short enough to guess draw a warning."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from policies.config import validate_document
from policies.secrets import WEAK_SECRET_CHARS, generate_secret, weak_secret
from policies.yaml_source import parse_yaml

POLICY = textwrap.dedent(
    """
    gateway:
      session_secret_env: SESSION_SECRET
    virtual_keys:
      - id: alice
        secret_env: ALICE_KEY
      - id: bob
        secret_env: BOB_KEY
    admin:
      tokens:
        - id: ops
          role: admin
          secret_env: OPS_TOKEN
    """
)
STRONG = generate_secret()


def warnings_for(environ: dict[str, str]) -> list[str]:
    return validate_document(parse_yaml(POLICY, "gateway.yaml"), environ=environ).warnings


def test_each_short_secret_from_the_environment_is_named_without_revealing_it() -> None:
    weak = "letmein2024"
    found = warnings_for(
        {"ALICE_KEY": weak, "BOB_KEY": STRONG, "OPS_TOKEN": "hunter2", "SESSION_SECRET": "s3cret"}
    )
    short = [w for w in found if "could be guessed" in w]
    assert [w.split(":")[0] for w in short] == [
        "virtual key 'alice'",
        "admin token 'ops'",
        "gateway.session_secret_env",
    ]
    assert all(secret not in w for w in found for secret in (weak, "hunter2", "s3cret", STRONG))
    assert "ALICE_KEY" in short[0] and "OPS_TOKEN" in short[1] and "SESSION_SECRET" in short[2]


def test_long_random_secrets_and_unset_variables_draw_no_such_warning() -> None:
    strong = {"ALICE_KEY": STRONG, "BOB_KEY": generate_secret(), "OPS_TOKEN": generate_secret()}
    assert not [w for w in warnings_for({**strong, "SESSION_SECRET": generate_secret()}) if "guessed" in w]
    assert not [w for w in warnings_for({}) if "guessed" in w]  # unset: its own warning, not this one


def test_the_threshold_counts_characters_without_surrounding_space() -> None:
    assert weak_secret("x" * (WEAK_SECRET_CHARS - 1))
    assert weak_secret(" " * 10 + "x" * (WEAK_SECRET_CHARS - 1) + "\n")
    assert not weak_secret("x" * WEAK_SECRET_CHARS)
    assert not weak_secret(generate_secret())


def test_check_prints_the_warning(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(POLICY)
    env = {"PATH": "", "ALICE_KEY": "short", "BOB_KEY": STRONG, "OPS_TOKEN": STRONG, "SESSION_SECRET": STRONG}
    done = subprocess.run(
        [sys.executable, "-m", "gateway_app", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "virtual key 'alice': the secret in ALICE_KEY is shorter than" in done.stdout
    assert "short" not in done.stdout.replace("shorter", "")
