"""Which proxy, if any, the environment names for a URL: ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``
and ``NO_PROXY``, read the way urllib reads them (lower-case names win over upper-case ones, an empty
value unsets, ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD`` says we run as CGI), ``ALL_PROXY`` as
the fallback for both schemes as httpx and curl use it.

``NO_PROXY`` is a comma-separated list: ``*`` (no proxy at all), host names that match themselves and
their subdomains (``example.com``, ``.example.com`` and ``*.example.com`` all match ``api.example.com``),
an optional ``:port`` restricting an entry to that port, and IP addresses or networks
(``10.0.0.0/8``, ``::1``). Loopback addresses are not exempt unless listed, as with urllib and curl.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

_SCHEMES = ("http", "https", "all", "no")


@dataclass(frozen=True, slots=True)
class Proxy:
    url: str
    """The proxy's URL as given, credentials included: passed to the client, never logged."""
    source: str
    """The environment variable it came from (``HTTPS_PROXY``...)."""

    @property
    def display(self) -> str:
        """``scheme://host:port`` of the proxy: safe to log (no user name, no password)."""
        parts = urlsplit(self.url)
        host = parts.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        try:
            port = parts.port
        except ValueError:
            port = None
        return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def environment_proxies(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """``{"http"|"https"|"all"|"no": (value, variable name)}`` from the environment, urllib's way."""
    found: dict[str, tuple[str, str]] = {}
    for name, value in environ.items():  # any case first...
        key = name.lower()
        if key.endswith("_proxy") and value and key[:-6] in _SCHEMES:
            found[key[:-6]] = (value, name)
    if "REQUEST_METHOD" in environ:  # CGI: HTTP_PROXY may come from a client's "Proxy:" header
        found.pop("http", None)
    for name, value in environ.items():  # ...then the lower-case names win
        if name.endswith("_proxy") and name.islower() and name[:-6] in _SCHEMES:
            if value:
                found[name[:-6]] = (value, name)
            else:
                found.pop(name[:-6], None)
    return found


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` (its value) exempts ``host`` (no brackets) on ``port``."""
    host = host.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.split("://", 1)[-1]
        entry_port: int | None = None
        if entry.startswith("["):  # [v6] or [v6]:port
            closing = entry.find("]")
            rest = entry[closing + 1 :]
            if rest.startswith(":") and rest[1:].isdigit():
                entry_port = int(rest[1:])
            entry = entry[1:closing]
        elif entry.count(":") == 1:
            name, _, maybe_port = entry.partition(":")
            if maybe_port.isdigit():
                entry, entry_port = name, int(maybe_port)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.removeprefix("*").lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def proxy_for(url: str, environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy the environment names for ``url``, or None (none set, or ``NO_PROXY`` exempts it)."""
    proxies = environment_proxies(os.environ if environ is None else environ)
    parts = urlsplit(url)
    chosen = proxies.get(parts.scheme) or proxies.get("all")
    if chosen is None or not parts.hostname:
        return None
    no_proxy = proxies.get("no")
    if no_proxy is not None and bypassed(
        parts.hostname, parts.port or _default_port(parts.scheme), no_proxy[0]
    ):
        return None
    value, source = chosen
    if "://" not in value:
        value = f"http://{value}"  # HTTPS_PROXY=proxy:3128, as curl and httpx read it
    return Proxy(value, source)
