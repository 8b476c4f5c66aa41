"""`mcp-gateway check` is an oracle for `serve`: what one refuses, the other refuses, with the same words.

Each broken file below used to pass `check` and then fail `serve` at start (or leave it running
with a dead upstream or a literal ``${VAR}``). Now both refuse it, naming the file, the line and
the path. `serve` runs as a real process; a valid file passes `check` and `serve` starts on it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from gateway_app.cli import main
from tests.conftest import free_port

pytestmark = pytest.mark.slow

BROKEN = [
    pytest.param(
        "gateway: {database_url: '${DB_URL}'}",
        {},
        "1: gateway.database_url: environment variable DB_URL is not set",
        id="database-url-unset-variable",
    ),
    pytest.param(
        "gateway: {database_url: '${DB_URL}'}",
        {"DB_URL": "postgres//db.internal/gateway"},
        "1: gateway.database_url: not a database URL SQLAlchemy can parse",
        id="database-url-from-env-unparsable",
    ),
    pytest.param(
        "gateway: {database_url: 'mysql://gw@db.internal/gateway'}",
        {},
        "1: gateway.database_url: the driver for 'mysql' is not installed",
        id="database-driver-missing",
    ),
    pytest.param(
        "gateway: {database_url: 'postgresql+asyncpg://db.internal/gateway'}",
        {},
        "1: gateway.database_url: 'postgresql+asyncpg' is an asyncio driver",
        id="database-async-driver",
    ),
    pytest.param(
        "gateway: {database_url: 'sqlite://'}",
        {},
        "1: gateway.database_url: an in-memory SQLite database is private to one connection",
        id="database-in-memory",
    ),
    pytest.param(
        "gateway:\n  host: not a host",
        {},
        "2: gateway.host: host must be an IP address or a host name",
        id="listen-host",
    ),
    pytest.param(
        "gateway: {port: '${GW_PORT:-80x}'}",
        {},
        "1: gateway.port: Input should be a valid integer",
        id="port-from-env-default",
    ),
    pytest.param(
        "providers:\n  - {name: p, kind: anthropic, base_url: 'http://api.internal:abc'}",
        {},
        "2: providers[0].base_url: base_url has an invalid port",
        id="provider-base-url-port",
    ),
    pytest.param(
        "providers:\n  - name: p\n    kind: anthropic\n    base_url: ${UPSTREAM_URL}",
        {},
        "4: providers[0].base_url: environment variable UPSTREAM_URL is not set",
        id="provider-base-url-unset-variable",
    ),
    pytest.param(
        "mcp:\n  servers:\n    - {name: web, url: 'http://:8080/mcp'}",
        {},
        "3: mcp.servers[0].url: url needs a valid host name",
        id="upstream-url-without-host",
    ),
    pytest.param(
        "mcp:\n  servers:\n    - name: fs\n      command: python\n      args: [--root, '${FS_ROOT}']",
        {},
        "5: mcp.servers[0].args[1]: environment variable FS_ROOT is not set",
        id="stdio-arg-unset-variable",
    ),
    pytest.param(
        "budgets:\n  org: {daily_limit_usd: 5}\n  alert_webhook: 'https://'",
        {},
        "3: budgets.alert_webhook: alert_webhook needs a valid host name",
        id="webhook-url",
    ),
    pytest.param(
        "gateway:\n  audit: {fallback_file: data}",
        {},
        "2: gateway.audit.fallback_file: fallback_file 'data' is a directory",
        id="audit-fallback-is-a-directory",
    ),
    pytest.param(
        "llm_proxy:\n  ledger_fallback_file: data",
        {},
        "2: llm_proxy.ledger_fallback_file: ledger_fallback_file 'data' is a directory",
        id="ledger-fallback-is-a-directory",
    ),
    pytest.param(
        "mcp:\n  instructions: 'Ask ${ for help'",
        {},
        "2: mcp.instructions: '${' must start ${NAME} or ${NAME:-default}",
        id="broken-reference-in-any-string",
    ),
]


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("DB_URL", "GW_"))}
    env.update(extra)
    return env


@pytest.mark.parametrize(("yaml_text", "env", "expected"), BROKEN)
def test_check_and_serve_refuse_the_same_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    yaml_text: str,
    env: dict[str, str],
    expected: str,
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml_text + "\n")
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)  # relative paths in the file are relative to where both commands run
    for name in ("DB_URL", "GW_PORT", "UPSTREAM_URL", "FS_ROOT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SystemExit) as exited:
        main(["check", "--config", str(config)])
    assert exited.value.code not in (0, None)
    assert f"{config}:{expected}" in capsys.readouterr().err

    try:
        served = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway_app",
                "serve",
                "--config",
                str(config),
                "--port",
                str(free_port()),
            ],
            cwd=tmp_path,
            env=_env(env),
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("serve kept running on a file that check refuses")
    assert served.returncode != 0
    assert f"{config}:{expected}" in served.stderr


def test_a_valid_file_passes_check_and_serves_with_every_value_expanded_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        textwrap.dedent(
            """
            gateway:
              port: ${GW_PORT}
              database_url: ${GW_DATABASE_URL:-sqlite:///data/unused.db}
            virtual_keys:
              - {id: k, secret_env: GW_KEY}
            mcp:
              instructions: "Tools cost $$0"
              servers:
                - name: fs
                  command: python
                  args: [-m, examples.servers.filesystem, --root, "files-$${NOT_EXPANDED}"]
              virtual_key_permissions: {k: "*"}
            providers:
              - {name: mock, kind: anthropic, base_url: "${GW_MOCK_URL:-http://127.0.0.1:9}"}
            routes:
              - {match: "claude-*", provider: "${GW_PROVIDER:-mock}"}
            """
        )
    )
    env = {
        "GW_PORT": str(port),
        "GW_DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}",
        "GW_KEY": "mgw_test_valid_0123456789",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["check", "--config", str(config)]) == 0
    assert f"{config}: OK" in capsys.readouterr().out

    process = subprocess.Popen(
        [sys.executable, "-m", "gateway_app", "serve", "--config", str(config)],
        cwd=tmp_path,
        env=_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 45
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, process.stderr and process.poll()
        # The stdio child got the escaped text as written: expanded once, at load, never again.
        assert (tmp_path / "files-${NOT_EXPANDED}").is_dir()
        assert (tmp_path / "gateway.db").is_file()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    # uvicorn re-raises the signal it stopped on once shutdown is complete
    assert process.returncode in (0, -signal.SIGTERM), stderr[-2000:]
    assert "Application shutdown complete" in stderr


def test_check_connect_refuses_a_database_serve_cannot_reach(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"gateway: {{database_url: 'postgresql://127.0.0.1:{free_port()}/gateway'}}\n")
    assert main(["check", "--config", str(config)]) == 0  # the file itself is fine...
    assert main(["check", "--config", str(config), "--connect"]) == 1  # ...the database is not there
    assert "database: cannot connect" in capsys.readouterr().out
    served = subprocess.run(
        [sys.executable, "-m", "gateway_app", "serve", "--config", str(config), "--port", str(free_port())],
        cwd=tmp_path,
        env=_env({}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert served.returncode != 0 and "Application startup failed" in served.stderr


def test_check_connect_reaches_a_running_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"gateway: {{database_url: 'sqlite:///{tmp_path}/data/gateway.db'}}\n")
    assert main(["check", "--config", str(config), "--connect"]) == 0
    assert f"database: {tmp_path}/data/gateway.db is created at start" in capsys.readouterr().out
    assert not (tmp_path / "data").exists()
