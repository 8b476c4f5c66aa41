"""Proxies from the environment and the choice of client: the rules (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY,
NO_PROXY), and real requests through a CONNECT proxy on loopback, including HTTP/2 through the tunnel.
The whole gateway through the proxy is in test_gateway_through_proxy.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from gateway_common.http import ClientOptions, ConnectError, choose_transport, open_client
from gateway_common.http.proxies import bypassed, proxy_for
from policies.http_client import TlsFiles
from tests.fixtures.connect_proxy import ConnectProxy
from tests.fixtures.raw_http import H2Server, RawServer, echo_handler, raw_servers
from tests.fixtures.tls import TestCA

ORIGIN = "https://api.example.com/v1"


@pytest.mark.parametrize(
    ("environ", "url", "expected"),
    [
        ({}, ORIGIN, None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, ORIGIN, ("http://proxy:3128", "HTTPS_PROXY")),
        (
            {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"},
            ORIGIN,
            ("http://lower:1", "https_proxy"),
        ),
        ({"HTTPS_PROXY": "http://upper:2", "https_proxy": ""}, ORIGIN, None),  # lower-case empty unsets
        ({"HTTP_PROXY": "http://proxy:3128"}, ORIGIN, None),  # only for http:// URLs
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://api.example.com", ("http://proxy:3128", "HTTP_PROXY")),
        ({"ALL_PROXY": "http://all:1"}, ORIGIN, ("http://all:1", "ALL_PROXY")),
        ({"ALL_PROXY": "http://all:1", "HTTPS_PROXY": "http://s:2"}, ORIGIN, ("http://s:2", "HTTPS_PROXY")),
        ({"HTTPS_PROXY": "proxy:3128"}, ORIGIN, ("http://proxy:3128", "HTTPS_PROXY")),  # no scheme: http
        ({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, "http://a.example", None),  # CGI (httpoxy)
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, ORIGIN, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, ORIGIN, None),
        ({"HTTPS_PROXY": "http://p:1", "no_proxy": ".example.com"}, ORIGIN, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "other.com, api.example.com"}, ORIGIN, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "ample.com"}, ORIGIN, ("http://p:1", "HTTPS_PROXY")),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.example.com:8443"},
            ORIGIN,
            ("http://p:1", "HTTPS_PROXY"),
        ),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.example.com:443"}, ORIGIN, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ""}, ORIGIN, ("http://p:1", "HTTPS_PROXY")),
        ({"HTTPS_PROXY": "http://p:1"}, "https://127.0.0.1:8443", ("http://p:1", "HTTPS_PROXY")),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "127.0.0.0/8"}, "https://127.0.0.1:8443", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, "https://10.1.2.3", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "::1"}, "https://[::1]:8443/x", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "[::1]:8443"}, "https://[::1]:8443/x", None),
    ],
)
def test_the_environment_rules(environ: dict[str, str], url: str, expected: tuple[str, str] | None) -> None:
    proxy = proxy_for(url, environ)
    assert (None if proxy is None else (proxy.url, proxy.source)) == expected


def test_no_proxy_entries() -> None:
    assert bypassed("api.example.com", 443, "*.example.com")
    assert bypassed("EXAMPLE.com", 443, "example.COM")
    assert bypassed("example.com.", 443, "example.com")
    assert not bypassed("notexample.com", 443, "example.com")
    assert not bypassed("192.168.1.1", 80, "10.0.0.0/8,example.com")
    assert bypassed("example.com", 80, "a.com b.com example.com")  # space-separated, as curl allows


def test_the_choice_of_client_and_why() -> None:
    proxied = {"HTTPS_PROXY": "http://user:secret@proxy.corp:3128"}
    choice = choose_transport(ORIGIN, ClientOptions(), proxied)
    assert (choice.kind, choice.reason) == ("httpx", "proxy http://proxy.corp:3128 from HTTPS_PROXY")
    assert choice.proxy is not None and choice.proxy.url == "http://user:secret@proxy.corp:3128"
    assert choose_transport(ORIGIN, ClientOptions(), {}).kind == "fast"
    assert choose_transport(ORIGIN, ClientOptions(), {**proxied, "NO_PROXY": "example.com"}).kind == "fast"
    assert choose_transport(ORIGIN, ClientOptions(http2=True), {}).reason == "http2: true in the policy"
    assert choose_transport(ORIGIN, ClientOptions(transport="httpx"), {}).kind == "httpx"
    forced = choose_transport(ORIGIN, ClientOptions(transport="fast"), proxied)
    assert (forced.kind, forced.proxy) == ("fast", None)
    assert forced.reason == "transport: fast in the policy (HTTPS_PROXY is not used for it)"
    with pytest.raises(ValueError, match="http2 needs the httpx transport"):
        choose_transport(ORIGIN, ClientOptions(transport="fast", http2=True), {})
    with pytest.raises(ValueError, match=r"socks5:// proxy; only http:// and https://"):
        choose_transport(ORIGIN, ClientOptions(), {"ALL_PROXY": "socks5://proxy:1080"})


def test_custom_tls_picks_httpx_unless_fast_is_asked_for(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    tls = TlsFiles(ca_bundle=str(ca.cert_path))
    assert choose_transport(ORIGIN, ClientOptions(tls=tls), {}).reason == "tls.ca_bundle in the policy"
    assert choose_transport(ORIGIN, ClientOptions(tls=tls, transport="fast"), {}).kind == "fast"


@pytest.fixture
async def proxy() -> AsyncIterator[ConnectProxy]:
    async with ConnectProxy() as running:
        yield running


Serve = Callable[..., Awaitable[RawServer]]


@pytest.fixture
async def servers() -> AsyncIterator[Serve]:
    async with raw_servers() as start:
        yield start


@pytest.mark.anyio
async def test_https_and_http_origins_through_the_proxy(
    proxy: ConnectProxy, servers: Serve, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway_common.http")
    ca = TestCA(tmp_path)
    secure: RawServer = await servers(echo_handler, ca.server_context())
    plain: RawServer = await servers(echo_handler)
    environ = {"HTTPS_PROXY": proxy.url_with("gw", "s3cret"), "HTTP_PROXY": proxy.url}
    tls = TlsFiles(ca_bundle=str(ca.cert_path))
    https = open_client(secure.url, ClientOptions(tls=tls), environ)
    http = open_client(plain.url, ClientOptions(), environ)
    for _ in range(2):
        for client in (https, http):
            async with await client.request("POST", "/mcp", {"X-Test": "1"}, b"{}") as resp:
                assert resp.status == 200
                await resp.read()
    assert proxy.requests == [
        f"CONNECT 127.0.0.1:{secure.port}",  # one tunnel, kept alive for both requests
        f"POST http://127.0.0.1:{plain.port}/mcp",  # absolute form for http://
    ]
    assert secure.connections == 1 and b"X-Test: 1" in secure.requests[1]
    await https.aclose()
    await http.aclose()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert (
        f"HTTP client for https://127.0.0.1:{secure.port}: httpx (proxy http://127.0.0.1:{proxy.port} from HTTPS_PROXY"
        in logged
    )
    assert f"https://127.0.0.1:{secure.port} is a loopback address but goes through the proxy" in logged
    assert "s3cret" not in logged and "gw:" not in logged


@pytest.mark.anyio
async def test_no_proxy_bypasses_it(proxy: ConnectProxy, servers: Serve) -> None:
    plain: RawServer = await servers(echo_handler)
    environ = {"HTTP_PROXY": proxy.url, "NO_PROXY": "localhost,127.0.0.1"}
    client = open_client(plain.url, ClientOptions(), environ)
    assert type(client).__name__ == "HttpPool"
    async with await client.request("POST", "/mcp", {}, b"{}") as resp:
        assert await resp.read() == b'{"n": 1}'
    assert proxy.requests == []
    await client.aclose()


@pytest.mark.anyio
async def test_a_proxy_that_wants_credentials(servers: Serve, tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    secure: RawServer = await servers(echo_handler, ca.server_context())
    tls = TlsFiles(ca_bundle=str(ca.cert_path))
    async with ConnectProxy(credentials=("gw", "s3cret")) as guarded:
        good = open_client(
            secure.url, ClientOptions(tls=tls), {"HTTPS_PROXY": guarded.url_with("gw", "s3cret")}
        )
        async with await good.request("GET", "/", {}) as resp:
            assert await resp.read() == b'{"n": 1}'
        bad = open_client(
            secure.url, ClientOptions(tls=tls), {"HTTPS_PROXY": guarded.url_with("gw", "wrong")}
        )
        with pytest.raises(ConnectError, match="407") as refused:
            await bad.request("GET", "/", {})
        assert "wrong" not in str(refused.value)
        assert bad.in_use == 0 and guarded.refused == 1
        await good.aclose()
        await bad.aclose()


@pytest.mark.anyio
async def test_http2_is_negotiated_and_falls_back(proxy: ConnectProxy, tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    tls = TlsFiles(ca_bundle=str(ca.cert_path))
    async with (
        H2Server(ca.server_context(alpn=("h2", "http/1.1"))) as h2,
        H2Server(ca.server_context("h1", alpn=("http/1.1",))) as h1,
    ):
        for server, expected in ((h2, "HTTP/2"), (h1, "HTTP/1.1")):
            for environ in ({}, {"HTTPS_PROXY": proxy.url}):
                client = open_client(server.url, ClientOptions(http2=True, tls=tls), environ)
                responses = [
                    await client.request("POST", f"/v1/{i}", {"x-i": str(i)}, b"{}") for i in range(3)
                ]
                for i, resp in enumerate(responses):
                    assert getattr(resp, "http_version", None) == expected
                    assert orjson.loads(await resp.read()) == {
                        "protocol": expected,
                        "method": "POST",
                        "path": f"/v1/{i}",
                    }
                    if expected == "HTTP/2":
                        assert resp.headers.get_all("x-repeated") == ["one", "two"]
                assert client.in_use == 0
                if expected == "HTTP/2":
                    assert client.open_connections == 1  # three requests multiplexed on one connection
                await client.aclose()
        assert h2.protocols == ["h2", "h2"]  # one connection each time, directly and through the proxy
        assert h1.protocols == ["http/1.1"] * 6  # HTTP/1.1: a connection per unread response
    assert proxy.requests == [f"CONNECT 127.0.0.1:{h2.port}"] + [f"CONNECT 127.0.0.1:{h1.port}"] * 3
