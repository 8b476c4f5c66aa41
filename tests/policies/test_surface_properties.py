"""Property tests for what a grant says about tools, resources and prompts, the gateway's resource
URIs, and the prompt catalogue (examples and seed from the hypothesis profile in tests/conftest.py)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from policies import GatewayPolicy, Grant, Principal
from policies.catalogue import build_catalogue
from policies.naming import NamingRules, PrefixMode
from policies.permissions import KINDS
from policies.resource_uris import expose_uri, split_uri
from policies.servers import SERVER_NAME_PATTERN

names = st.from_regex(r"[a-h][a-h_]{0,5}", fullmatch=True)
uris = st.from_regex(r"[a-z]{1,5}://[a-h/{}._-]{0,12}", fullmatch=True)
globs = st.one_of(
    names, st.builds(lambda n: n[:2] + "*", names), st.just("*"), st.builds(lambda n: "?" + n, names)
)
kind_specs = st.one_of(st.none(), st.just("*"), st.lists(globs, min_size=1, max_size=3))
explicit = st.fixed_dictionaries(
    {}, optional={"tools": kind_specs, "resources": kind_specs, "prompts": kind_specs}
)
old_entry = st.one_of(st.just("*"), st.lists(globs, min_size=1, max_size=3))
server_names = st.one_of(names, st.just("*"))


def _matches(name: str, spec: Any) -> bool:
    return spec == "*" or (isinstance(spec, list) and any(p == "*" or fnmatchcase(name, p) for p in spec))


@given(spec=st.dictionaries(server_names, old_entry, max_size=4), server=names, name=names)
def test_todays_per_server_shapes_keep_their_meaning_for_tools_and_grant_the_rest_only_whole(
    spec: dict[str, Any], server: str, name: str
) -> None:
    grant = Grant.from_spec(spec, "key:k")
    entries = [spec[s] for s in (server, "*") if s in spec]
    assert grant.allows(server, name) is any(_matches(name, e) for e in entries)
    # "*" for a server is everything of it; a list of tool globs grants none of its resources or prompts.
    whole = any(e == "*" for e in entries)
    assert grant.allows_resource(server, name) is whole
    assert grant.allows_prompt(server, name) is whole


@given(listed=st.lists(names, max_size=4, unique=True), server=names, name=names, kind=st.sampled_from(KINDS))
def test_a_list_of_servers_and_a_star_grant_everything_of_them(
    listed: list[str], server: str, name: str, kind: Any
) -> None:
    assert Grant.from_spec(listed, "team:t").allows_kind(kind, server, name) is (server in listed)
    assert Grant.from_spec("*", "team:t").allows_kind(kind, server, name)
    assert not Grant.from_spec(None, "none").allows_kind(kind, server, name)


@given(
    spec=st.dictionaries(server_names, explicit, max_size=4),
    server=names,
    name=st.one_of(names, uris),
    kind=st.sampled_from(KINDS),
)
def test_the_explicit_shape_grants_each_kind_by_its_own_globs_and_nothing_it_leaves_out(
    spec: dict[str, Any], server: str, name: str, kind: Any
) -> None:
    grant = Grant.from_spec(spec, "key:k")
    expected = any(_matches(name, spec[s].get(kind)) for s in (server, "*") if s in spec)
    assert grant.allows_kind(kind, server, name) is expected
    # The policy file's validated form decides exactly like the plain one.
    policy = GatewayPolicy.model_validate(
        {
            "virtual_keys": [{"id": "k"}],
            "mcp": {
                "servers": [{"name": s, "command": "true"} for s in spec if s != "*"],
                "virtual_key_permissions": {"k": spec},
            },
        }
    )
    validated = policy.tool_grant(Principal("k", "k", None, "file"))
    assert validated.allows_kind(kind, server, name) is expected
    if not any(spec[s].get(k) for s in spec for k in KINDS):
        assert validated.is_empty


@given(server=st.from_regex(SERVER_NAME_PATTERN, fullmatch=True), uri=st.text(min_size=1, max_size=40))
def test_gateway_uris_are_reversible_for_every_server_name_and_upstream_uri(server: str, uri: str) -> None:
    exposed = expose_uri(server, uri)
    assert exposed.startswith(f"mcpgw://{server}/")
    assert split_uri(exposed) == (server, uri)
    assert split_uri("MCPGW" + exposed[5:]) == (server, uri)  # the scheme is case-insensitive


@given(
    a=st.tuples(st.from_regex(SERVER_NAME_PATTERN, fullmatch=True), st.text(min_size=1, max_size=20)),
    b=st.tuples(st.from_regex(SERVER_NAME_PATTERN, fullmatch=True), st.text(min_size=1, max_size=20)),
)
def test_two_resources_never_share_a_gateway_uri(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert (expose_uri(*a) == expose_uri(*b)) is (a == b)


@given(text=st.text(max_size=30))
def test_anything_else_is_not_a_gateway_uri(text: str) -> None:
    parts = split_uri(text)
    if parts is not None:
        assert expose_uri(*parts) == text or text[:8].lower() == "mcpgw://"
    assert split_uri("mcpgw://") is None and split_uri("mcpgw://server") is None
    assert split_uri("mcpgw://server/") is None and split_uri("mcpgw:///uri") is None


@given(
    prompts=st.dictionaries(
        names, st.lists(names, min_size=1, max_size=5, unique=True), min_size=1, max_size=4
    ),
    spec=st.dictionaries(names, explicit, max_size=4),
    mode=st.sampled_from(list(PrefixMode)),
)
def test_the_prompt_catalogue_resolves_only_what_a_grant_may_see(
    prompts: dict[str, list[str]], spec: dict[str, Any], mode: PrefixMode
) -> None:
    index = build_catalogue(prompts, {}, NamingRules("__", mode, "gateway"), "prompts")
    grant = Grant.from_spec(spec, "key:k")
    visible = {entry.exposed_name for entry in index.visible(grant)}
    for exposed, entry in index.entries.items():
        resolved = index.resolve(exposed, grant)
        assert (resolved is not None) is grant.allows_prompt(entry.server, entry.tool)
        assert (resolved is not None) is (exposed in visible)
    for collision in index.collisions:
        assert collision.describe().startswith(
            f"prompt name {collision.exposed_name!r} is claimed by prompt "
        )
        assert collision.exposed_name not in index.entries
    assert index.warnings == []  # prompt names are not checked against model API limits
