"""Headers both HTTP client implementations share: response headers that keep repeated values, and the
check that refuses request headers that would let a value smuggle a header or a request of its own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar, overload

from gateway_common.http.base import InvalidRequest
from policies.http_client import HEADER_NAME, header_problem

_T = TypeVar("_T")
_CONTROLS_BUT_HTAB = bytes(c for c in range(32) if c != 9) + b"\x7f"
_checked_names: set[str] = set()
_MAX_CHECKED_NAMES = 4096
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Headers(dict[str, str]):
    """Response headers by lower-case name. ``get`` and ``[]`` give the first value of a name (case
    does not matter); ``get_all`` gives every value, in order, as the server sent them."""

    _more: dict[str, list[str]] | None = None
    """Second and later values of repeated names (None, the usual case, when no name repeated)."""

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        headers = cls()
        for name, value in pairs:
            headers.add(name.lower(), value)
        return headers

    def add(self, name: str, value: str) -> None:
        """Record one header line (``name`` already lower-case)."""
        size = len(self)
        self.setdefault(name, value)
        if len(self) == size:
            self.add_repeat(name, value)

    def add_repeat(self, name: str, value: str) -> None:
        """Record a later value of a name already present."""
        if self._more is None:
            self._more = {}
        self._more.setdefault(name, []).append(value)

    @overload
    def get(self, name: str, default: None = None, /) -> str | None: ...

    @overload
    def get(self, name: str, default: str, /) -> str: ...

    @overload
    def get(self, name: str, default: _T, /) -> str | _T: ...

    def get(self, name: str, default: object = None, /) -> object:
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str, /) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object, /) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in the order received; ``[]`` when absent."""
        name = name.lower()
        first = dict.get(self, name)
        if first is None:
            return []
        more = self._more.get(name) if self._more else None
        return [first, *more] if more else [first]


def check_name(name: str) -> None:
    """Refuse a header name that is not an HTTP token, or one the client sets itself."""
    if name in _checked_names:
        return
    problem = header_problem(name, "") if isinstance(name, str) else "a header name is not text"
    if problem is not None:
        raise InvalidRequest(f"refused to send the request: {problem}")
    if len(_checked_names) < _MAX_CHECKED_NAMES:
        _checked_names.add(name)


def check_value(name: str, value: str) -> None:
    """Refuse a value with CR, LF, NUL or another control character, or one that is not Latin-1."""
    problem = header_problem(name, value) if isinstance(value, str) else f"the header {name!r} is not text"
    if problem is not None:
        raise InvalidRequest(f"refused to send the request: {problem}")


def check_target(target: str) -> None:
    """An origin-form target (path and query) with no space or control character."""
    if not target.startswith("/") or any(ch <= " " or ch == "\x7f" for ch in target):
        raise InvalidRequest(f"refused to send an invalid request target: {target!r:.120}")


def check_request(method: str, target: str, headers: Mapping[str, str]) -> None:
    """Everything `encode_head` refuses, for a client that encodes the request itself (httpx)."""
    if not HEADER_NAME.fullmatch(method):
        raise InvalidRequest(f"refused to send an invalid method: {method!r:.40}")
    check_target(target)
    for name, value in headers.items():
        check_name(name)
        check_value(name, value)


def encode_head(method: str, target: str, host: str, headers: Mapping[str, str], body_length: int) -> bytes:
    """The request line and headers of an HTTP/1.1 request, refusing anything that could inject.

    The common case costs one C-level pass over the encoded head: deleting every control character
    (HTAB aside) must remove exactly the CR LF pairs put there here. Only when that fails are the
    parts checked one by one, to name the culprit.
    """
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {body_length}"]
    for name, value in headers.items():
        if name not in _checked_names:
            check_name(name)
        lines.append(f"{name}: {value}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        head = b""
    if (
        head
        and len(head.translate(None, _CONTROLS_BUT_HTAB)) == len(head) - 2 * (len(lines) + 1)
        and method in _METHODS
        and target[:1] == "/"
        and " " not in target
    ):
        return head
    check_request(method, target, headers)  # names the culprit
    try:  # valid after all (an unusual method)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidRequest(
            f"refused to send a request target with characters outside Latin-1: {target!r:.120}"
        ) from None
