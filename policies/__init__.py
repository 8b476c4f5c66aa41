"""The governance model: typed policy (keys, teams, servers, permissions, budgets, limits) and
the pure decisions over it. Imports neither starlette nor mcp."""

from policies.config import GatewayPolicy, LoadedPolicy, load_policy, load_policy_text
from policies.errors import ConfigError, ConfigIssue, PolicyError
from policies.keys import Principal, TeamConfig, VirtualKeyConfig
from policies.permissions import Grant, ToolGrant
from policies.servers import ServerConfig

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "GatewayPolicy",
    "Grant",
    "LoadedPolicy",
    "PolicyError",
    "Principal",
    "ServerConfig",
    "TeamConfig",
    "ToolGrant",
    "VirtualKeyConfig",
    "load_policy",
    "load_policy_text",
]
