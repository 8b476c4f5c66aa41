"""No key secret in what `mcp-gateway serve` prints or logs, unless the local demo asks for it.

A real `serve` process with secrets in its environment and in an env file, at debug log level,
serving valid and invalid requests on /mcp and /v1/messages; then its stdout and stderr are read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx2
import yaml

from policies.secrets import hash_secret
from tests.conftest import PYTHON, REPO_ROOT, free_port, upstream_stdio

ENV_SECRET = "mgw_banner_env_Secret_0123456789abcdef"
FILE_SECRET = "mgw_banner_envfile_Secret_0123456789abc"
DIGEST_SECRET = "mgw_banner_digest_Secret_0123456789abcd"
PROVIDER_SECRET = "sk-banner-provider-Secret-0123456789"
ADMIN_SECRET = "adm_banner_Secret_0123456789abcdef"
SECRETS = (ENV_SECRET, FILE_SECRET, DIGEST_SECRET, PROVIDER_SECRET, ADMIN_SECRET)


def write_config(tmp_path: Path, port: int) -> Path:
    config = {
        "gateway": {"port": port, "database_url": f"sqlite:///{tmp_path / 'gateway.db'}"},
        "teams": [{"name": "eng"}],
        "virtual_keys": [
            {"id": "vk_env", "name": "From env", "team": "eng", "secret_env": "BANNER_KEY_ENV"},
            {"id": "vk_file", "team": "eng", "secret_env": "BANNER_KEY_FILE"},
            {"id": "vk_digest", "secret_sha256": hash_secret(DIGEST_SECRET)},
            {"id": "vk_db"},
        ],
        "admin": {"tokens": [{"id": "ops", "role": "admin", "secret_env": "BANNER_ADMIN"}]},
        "mcp": {"servers": [upstream_stdio("alpha")], "team_permissions": {"eng": "*"}},
        "providers": [
            {
                "name": "nowhere",
                "kind": "anthropic",
                "base_url": f"http://127.0.0.1:{free_port()}",
                "api_key_env": "BANNER_PROVIDER_KEY",
            }
        ],
        "routes": [{"match": "claude-*", "provider": "nowhere"}],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_serve(tmp_path: Path, *flags: str) -> tuple[str, str, str]:
    """Start `serve`, use it with good and bad secrets, stop it; returns (stdout, stderr, base url)."""
    port = free_port()
    config = write_config(tmp_path, port)
    env_file = tmp_path / "secrets.env"
    env_file.write_text(f"BANNER_KEY_FILE={FILE_SECRET}\n")
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "BANNER_KEY_ENV": ENV_SECRET,
        "BANNER_PROVIDER_KEY": PROVIDER_SECRET,
        "BANNER_ADMIN": ADMIN_SECRET,
    }
    env.pop("BANNER_KEY_FILE", None)
    base = f"http://127.0.0.1:{port}"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        command = [PYTHON, "-m", "gateway_app", "serve", "--config", str(config), "--env-file", str(env_file)]
        proc = subprocess.Popen(
            [*command, "--log-level", "debug", *flags],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 40
        while "alpha] ready" not in err.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.1)
        init = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        with httpx2.Client(base_url=base, timeout=10) as http:
            for secret in SECRETS:
                bearer = {"Authorization": f"Bearer {secret}"}
                http.post("/mcp", json=init, headers={**bearer, "MCP-Protocol-Version": "2026-07-28"})
                http.post(
                    "/v1/messages",
                    json={
                        "model": "claude-haiku-4-5",
                        "max_tokens": 5,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                    headers={"x-api-key": secret},
                )
                http.get("/readyz", headers=bearer)
                http.get("/v1/models", headers=bearer)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return out.read_text(errors="replace"), err.read_text(errors="replace"), base


def test_serve_prints_no_secret_without_the_demo_flag(tmp_path: Path) -> None:
    stdout, stderr, base = run_serve(tmp_path)
    for secret in SECRETS:
        assert secret not in stdout and secret not in stderr, secret
    assert "secrets are not printed" in stdout
    assert "# From env (vk_env, team eng): secret in $BANNER_KEY_ENV" in stdout
    assert f'{base}/mcp --header "Authorization: Bearer $BANNER_KEY_ENV"' in stdout
    assert f"export ANTHROPIC_BASE_URL={base} ANTHROPIC_API_KEY=$BANNER_KEY_ENV" in stdout
    assert "vk_file, team eng): secret in $BANNER_KEY_FILE" in stdout
    assert "set -a; . " in stdout  # how to get the env file's variables into a shell
    assert "(vk_digest): secret: the one whose SHA-256 the policy holds" in stdout
    assert (
        f"(vk_db): secret from: mcp-gateway keys create vk_db --config {tmp_path / 'gateway.yaml'}" in stdout
    )
    assert '--header "Authorization: Bearer <secret of vk_db>"' in stdout
    assert "WARNING" not in stdout


def test_serve_shows_demo_secrets_only_with_the_flag_and_warns(tmp_path: Path) -> None:
    stdout, stderr, base = run_serve(tmp_path, "--show-demo-secrets")
    assert f'{base}/mcp --header "Authorization: Bearer {ENV_SECRET}"' in stdout
    assert f'{base}/mcp --header "Authorization: Bearer {FILE_SECRET}"' in stdout
    assert f"export ANTHROPIC_BASE_URL={base} ANTHROPIC_API_KEY={FILE_SECRET}" in stdout
    assert "WARNING: --show-demo-secrets" in stdout and "--show-demo-secrets" in stderr
    # Secrets the process cannot read, the provider's key and admin tokens are never printed.
    for secret in (DIGEST_SECRET, PROVIDER_SECRET, ADMIN_SECRET):
        assert secret not in stdout and secret not in stderr, secret
    # The flag is about the banner: nothing is logged with a secret.
    for secret in SECRETS:
        assert secret not in stderr, secret
