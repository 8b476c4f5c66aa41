"""Admin tokens in the policy file: their shape, their conflicts with virtual keys, their lookup."""

from __future__ import annotations

import textwrap

import pytest

from policies import ConfigError, load_policy_text
from policies.admin import AdminRole, AdminSettings, AdminTokens
from policies.secrets import hash_secret

ADMIN = "admin-secret-0123456789"
AUDITOR = "auditor-secret-0123456789"


def load(text: str) -> AdminSettings:
    return load_policy_text(textwrap.dedent(text), "p.yaml").policy.admin


def test_tokens_by_variable_or_digest_with_a_role() -> None:
    admin = load(
        f"""
        admin:
          tokens:
            - {{id: ops, role: admin, secret_env: OPS_TOKEN}}
            - {{id: audit, role: auditor, secret_sha256: "{hash_secret(AUDITOR).upper()}"}}
        """
    )
    assert [(t.id, t.role) for t in admin.tokens] == [("ops", AdminRole.ADMIN), ("audit", AdminRole.AUDITOR)]
    assert admin.tokens[1].secret_sha256 == hash_secret(AUDITOR)
    assert load("gateway: {health_details: token}\n").tokens == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "admin:\n  tokens:\n    - {id: a, role: admin}\n",
            "p.yaml:3: admin.tokens[0]: give exactly one of secret_env or secret_sha256",
        ),
        (
            "admin:\n  tokens:\n    - {id: a, role: admin, secret_env: X, secret_sha256: " + "a" * 64 + "}\n",
            "give exactly one of secret_env or secret_sha256",
        ),
        (
            "admin:\n  tokens:\n    - {id: a, role: root, secret_env: X}\n",
            "admin.tokens[0].role: Input should be",
        ),
        (
            "admin:\n  tokens:\n    - {id: a, role: admin, secret_env: X, scope: all}\n",
            "unknown field 'scope'",
        ),
        ("admin:\n  token: []\n", "p.yaml:2: admin.token: unknown field 'token'"),
        ("admin:\n  tokens:\n    - {id: a, role: admin, secret_sha256: abc}\n", "must be 64 hex characters"),
        (
            "gateway: {health_details: everyone}\n",
            "gateway.health_details: Input should be 'loopback' or 'token'",
        ),
        (
            "admin:\n  tokens:\n    - {id: a, role: admin, secret_env: X}\n    - {id: a, role: auditor, secret_env: Y}\n",
            "admin token 'a' is defined more than once",
        ),
        (
            "virtual_keys:\n  - {id: k, secret_env: SHARED}\n"
            "admin:\n  tokens:\n    - {id: a, role: admin, secret_env: SHARED}\n",
            "p.yaml:5: admin.tokens[0].secret_env: SHARED is also a virtual key's secret_env",
        ),
        (
            f"virtual_keys:\n  - {{id: k, secret_sha256: {'b' * 64}}}\n"
            f"admin:\n  tokens:\n    - {{id: a, role: admin, secret_sha256: {'B' * 64}}}\n",
            "admin.tokens[0].secret_sha256: a virtual key has the same secret_sha256",
        ),
    ],
)
def test_a_bad_admin_section_is_an_error_with_its_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(text)
    assert expected in str(error.value)


def settings() -> AdminSettings:
    return AdminSettings.model_validate(
        {
            "tokens": [
                {"id": "ops", "role": "admin", "secret_env": "OPS_TOKEN"},
                {"id": "audit", "role": "auditor", "secret_sha256": hash_secret(AUDITOR)},
                {"id": "unset", "role": "admin", "secret_env": "UNSET_TOKEN"},
            ]
        }
    )


def test_lookup_by_secret() -> None:
    tokens, warnings = AdminTokens.from_settings(settings(), {"OPS_TOKEN": ADMIN})
    assert len(tokens) == 2
    ops = tokens.identify(ADMIN)
    audit = tokens.identify(AUDITOR)
    assert ops is not None and (ops.token_id, ops.role) == ("ops", AdminRole.ADMIN)
    assert audit is not None and (audit.token_id, audit.role) == ("audit", AdminRole.AUDITOR)
    for wrong in (None, "", "x", ADMIN + " ", hash_secret(AUDITOR)):
        assert tokens.identify(wrong) is None
    assert warnings == [
        "admin token 'unset': environment variable UNSET_TOKEN is not set; the token cannot be used"
    ]


def test_a_token_with_a_virtual_keys_secret_is_not_an_admin_token() -> None:
    tokens, warnings = AdminTokens.from_settings(
        settings(), {"OPS_TOKEN": ADMIN, "UNSET_TOKEN": "x" * 20}, key_digests={hash_secret(ADMIN)}
    )
    assert tokens.identify(ADMIN) is None
    assert tokens.identify(AUDITOR) is not None
    assert any("admin token 'ops' has the same secret as a virtual key" in w for w in warnings)
    assert not any(ADMIN in w for w in warnings)
