"""Secrets out of the audit log: what a `Redactor` replaces before a row is written.

Runs in the audit writer's thread (never on the request path), on the arguments,
the result and the error text of every row, before anything reaches the database
or the fallback file:

- a value under a secret-looking name (``password``, ``api_key``, ``Authorization``,
  ``client_secret``, ``*_token``, ``cookie``, ...; compared lower-case with ``-``,
  ``_`` and spaces removed) becomes ``"[redacted:field]"``, whatever its type
  (``null`` and booleans are kept: they hold no secret);
- inside any string, credential shapes (`DETECTORS`, one per name in
  `policies.servers.REDACTION_KINDS`: cloud and API keys, tokens, JWTs, bearer tokens,
  PEM private keys, passwords in URLs, ``password=...`` pairs) become ``"[redacted:<kind>]"``;
- the policy adds names and patterns, globally and per server, and a server may
  skip built-in kinds (`AuditRules`).

The walk is iterative (no recursion, whatever the nesting) and copy-on-write: the
objects the request path handed over are never changed (a result may still be
on its way to the client), and a value without secrets is returned as it is.
Only values the writer stores whole are walked; a value too large to store is
cut to a JSON-text preview first, and `Redactor.json_text` cleans that.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policies import GatewayPolicy
    from policies.gateway_settings import AuditSettings
    from policies.servers import ServerAuditSettings


def marker(kind: str) -> str:
    return f"[redacted:{kind}]"


FIELD_MARKER = marker("field")

MAX_CONTAINERS = 100_000
"""Objects and arrays one value may hold for `Redactor.value` to walk it (`TooLarge` beyond)."""

_SECRET_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "authorization",
    "cookie",
    "privatekey",
    "accesskey",
    "credential",
    "signingkey",
    "encryptionkey",
)
"""A normalised name containing one of these is secret-looking (client_secret, x-api-key, Set-Cookie)."""
_SECRET_ENDINGS = ("token",)
"""...or ending in one (access_token, GITHUB_TOKEN; not max_tokens or token_count)."""
_SECRET_NAMES = frozenset({"auth", "pass", "pin", "otp", "jwt", "bearer", "sessionid", "session"})
"""...or being one of these."""
_NOT_NAME = re.compile(r"[^a-z0-9]")


def secret_looking(name: str) -> bool:
    """The built-in rule for names whose values are secrets (``field``)."""
    normalised = _NOT_NAME.sub("", name.lower())
    return (
        normalised in _SECRET_NAMES
        or normalised.endswith(_SECRET_ENDINGS)
        or any(part in normalised for part in _SECRET_PARTS)
    )


MIN_SECRET_CHARS = 7
"""Shorter strings hold no credential shape (the shortest, ``token=x``, has 7 characters)."""


@dataclass(frozen=True)
class Detector:
    """A credential shape. Every pattern starts with a literal (``re`` then finds candidates about as
    fast as ``str.find``); a ``lower`` pattern is written in lower case and searched in the
    lower-case text. The match, or only its group named ``secret``, becomes the kind's marker;
    ``word_start`` skips matches that continue a word (``task-...`` is no ``sk-...`` key)."""

    kind: str
    pattern: re.Pattern[str]
    lower: bool = False
    word_start: bool = False

    @cached_property
    def any_case(self) -> re.Pattern[str]:
        """For the rare text whose lower-case form has another length (positions would not match)."""
        return re.compile(self.pattern.pattern, self.pattern.flags | re.IGNORECASE)

    def spans(self, text: str, lowered: str | None) -> Iterator[tuple[int, int]]:
        """Where the secrets are in ``text``; ``lowered`` is its lower-case form if of the same length."""
        if not self.lower:
            haystack, pattern = text, self.pattern
        elif lowered is not None:
            haystack, pattern = lowered, self.pattern
        else:
            haystack, pattern = text, self.any_case
        keep = "secret" in pattern.groupindex
        for match in pattern.finditer(haystack):
            start = match.start()
            if self.word_start and start and haystack[start - 1].isalnum():
                continue
            yield match.span("secret") if keep else (start, match.end())


def _custom(pattern: str) -> Detector:
    return Detector("pattern", re.compile(pattern))


_NO_MARKER = r"(?!\[redacted:)"
_QUOTE = r"\\?[\"']?"
"""A quote, perhaps escaped: JSON text inside a string, or in a preview of JSON, has ``\\"``."""
_ASSIGNED = _QUOTE + r"\s*[:=]\s*" + _QUOTE + r"(?P<secret>" + _NO_MARKER + r"[^\s\"',;&}\]\\]+)"
"""What follows a secret's name in ``password=...``, ``"token": "..."``, ``api_key: ...``."""
_ASSIGNED_NAMES = (
    r"pass(?:word|wd|phrase)",
    r"secret(?:[_-]?(?:access[_-]?)?key)?",
    r"token",
    r"credentials?",
    r"api[_-]?key",
    r"access[_-]?key",
    r"private[_-]?key",
)

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private_key",
        re.compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY-----|.*\Z)", re.DOTALL
        ),
    ),
    Detector("aws_access_key", re.compile(r"A[KS]IA[A-Z0-9]{16}(?![A-Za-z0-9])"), word_start=True),
    Detector(
        "aws_secret_key",
        re.compile(
            r"aws_?secret_?access_?key"
            + _QUOTE
            + r"\s*[:=]?\s*"
            + _QUOTE
            + r"(?P<secret>"
            + _NO_MARKER
            + r"[a-z0-9/+=]{40})"
        ),
        lower=True,
    ),
    Detector("github_token", re.compile(r"gh(?:[pousr]_[A-Za-z0-9]{36,}|ithub_pat_[A-Za-z0-9_]{22,})")),
    Detector("slack_token", re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}")),
    Detector("google_api_key", re.compile(r"AIza[0-9A-Za-z_-]{35}")),
    Detector("stripe_key", re.compile(r"sk_(?:live|test)_[0-9A-Za-z]{16,}")),
    Detector("stripe_key", re.compile(r"rk_(?:live|test)_[0-9A-Za-z]{16,}")),
    Detector("anthropic_key", re.compile(r"sk-ant-[A-Za-z0-9_-]{20,}"), word_start=True),
    Detector("openai_key", re.compile(r"sk-(?!ant-)[A-Za-z0-9_-]{20,}"), word_start=True),
    Detector("gateway_key", re.compile(r"mgw_[A-Za-z0-9_-]{16,}")),
    Detector("jwt", re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")),
    Detector(
        "bearer", re.compile(r"bearer\s+(?P<secret>" + _NO_MARKER + r"[a-z0-9._~+/=-]{8,})"), lower=True
    ),
    Detector("url_password", re.compile(r"://[^\s/:@\"']+:(?P<secret>" + _NO_MARKER + r"[^\s/@\"']+)@")),
    *(Detector("assignment", re.compile(name + _ASSIGNED), lower=True) for name in _ASSIGNED_NAMES),
)
"""In order of precedence: where two overlap, the earlier one names the marker."""

_JSON_KEY = re.compile(r'"([^"\\]{1,256})"\s*:\s*')
_JSON_VALUE = re.compile(r'"(?:[^"\\]+|\\.)*"?|[^,\]}\s]+')
_CREDENTIAL_PREFIXES = ("AKIA", "ASIA", "gh", "xox", "AIza", "k_live_", "k_test_", "sk-", "mgw_", "eyJ")
"""How the credential shapes begin: a preview that ends in a run of token characters holding one
of these may end in a credential the cut made too short to recognise."""
_CUT_TAIL = re.compile(r"[A-Za-z0-9_+/=.~-]+\Z")


class TooLarge(Exception):
    """A value holds more containers than `MAX_CONTAINERS`."""


class Redactor:
    """One set of redaction rules, compiled. Use it from one thread at a time (it memoizes names)."""

    def __init__(
        self,
        *,
        extra_keys: Iterable[str] = (),
        extra_patterns: Iterable[str] = (),
        skip: Iterable[str] = (),
    ) -> None:
        skipped = set(skip)
        self._builtin_names = "field" not in skipped
        self._name_globs = tuple(name.lower() for name in extra_keys)
        builtin = tuple(d for d in DETECTORS if d.kind not in skipped)
        self._custom = tuple(_custom(pattern) for pattern in extra_patterns)
        self._detectors = builtin + self._custom
        self._shortest = 1 if self._custom else MIN_SECRET_CHARS
        # The quick test of the built-in shapes: bound ``search`` methods (word_start is ignored there:
        # the test may say yes too often, never too rarely). The policy's own patterns run every time.
        self._plain = tuple(d.pattern.search for d in builtin if not d.lower)
        self._lower = tuple(d.pattern.search for d in builtin if d.lower)
        self._any_case = tuple(d.any_case.search for d in builtin if d.lower)
        self._names: dict[str, bool] = {}

    def secret_name(self, name: str) -> bool:
        known = self._names.get(name)
        if known is None:
            lowered = name.lower()
            known = (self._builtin_names and secret_looking(name)) or any(
                fnmatch.fnmatchcase(lowered, glob) for glob in self._name_globs
            )
            if len(self._names) >= 4096:
                self._names.clear()
            self._names[name] = known
        return known

    def _lowered(self, text: str) -> str | None:
        lowered = text.lower()
        return lowered if len(lowered) == len(text) else None

    def _may_hold(self, text: str) -> bool:
        """Whether a built-in shape may be in ``text`` (a quick test: no replacing). Also true for any
        text holding one of several strings joined with NUL, as no built-in pattern is anchored."""
        for search in self._plain:
            if search(text) is not None:
                return True
        lowered = self._lowered(text)
        if lowered is None:
            return any(search(text) is not None for search in self._any_case)
        return any(search(lowered) is not None for search in self._lower)

    def text(self, text: str) -> tuple[str, int]:
        """``text`` with every credential shape replaced, and how many were."""
        if len(text) < self._shortest or not (self._custom or self._may_hold(text)):
            return text, 0
        lowered = self._lowered(text)
        found: list[tuple[int, int, int]] = []
        for rank, detector in enumerate(self._detectors):
            found.extend((start, rank, end) for start, end in detector.spans(text, lowered))
        if not found:
            return text, 0
        found.sort()
        parts: list[str] = []
        done = count = 0
        kept_start, kept_rank, kept_end = found[0]
        for start, rank, end in [*found[1:], (len(text) + 1, 0, 0)]:
            if start < kept_end:  # overlaps the one before: one marker for both
                kept_end = max(kept_end, end)
                continue
            parts += (text[done:kept_start], marker(self._detectors[kept_rank].kind))
            done, count = kept_end, count + 1
            kept_start, kept_rank, kept_end = start, rank, end
        parts.append(text[done:])
        return "".join(parts), count

    def value(self, root: Any) -> tuple[Any, int]:
        """``root`` with secrets replaced (a copy where anything changed; ``root`` itself otherwise),
        and how many values were replaced. Raises `TooLarge` past `MAX_CONTAINERS`."""
        if isinstance(root, str):
            return self.text(root)
        if not isinstance(root, dict | list):
            return root, 0
        shortest = self._shortest
        edits: list[tuple[Any, Any, Any]] = []
        strings: list[tuple[Any, Any, str]] = []
        parents: dict[int, list[tuple[Any, Any]]] = {id(root): []}
        stack: list[Any] = [root]
        while stack:
            node = stack.pop()
            items: Iterable[tuple[Any, Any]]
            if isinstance(node, dict):
                items = node.items()
                by_name = True
            else:
                items = enumerate(node)
                by_name = False
            for key, item in items:
                if (
                    by_name
                    and item is not None
                    and item is not True
                    and item is not False
                    and isinstance(key, str)
                    and self.secret_name(key)
                ):
                    edits.append((node, key, FIELD_MARKER))
                    continue
                if isinstance(item, str):
                    if len(item) >= shortest:
                        strings.append((node, key, item))
                elif isinstance(item, dict | list):
                    links = parents.get(id(item))
                    if links is not None:  # the same object twice: its edits are already noted
                        links.append((node, key))
                        continue
                    if len(parents) >= MAX_CONTAINERS:
                        raise TooLarge(f"more than {MAX_CONTAINERS} objects and arrays")
                    parents[id(item)] = [(node, key)]
                    stack.append(item)
        # One quick test over all the strings together, then the strings one by one only if it found
        # anything (or the policy has patterns of its own, which may be anchored).
        if strings and (self._custom or self._may_hold("\x00".join(text for _, _, text in strings))):
            for node, key, text in strings:
                cleaned, count = self.text(text)
                if count:
                    edits.append((node, key, cleaned))
        if not edits:
            return root, 0
        copies: dict[int, Any] = {}
        for node, key, replacement in edits:
            self._copy(node, copies, parents)[key] = replacement
        return copies[id(root)], len(edits)

    @staticmethod
    def _copy(node: Any, copies: dict[int, Any], parents: dict[int, list[tuple[Any, Any]]]) -> Any:
        """The copy of ``node``: made, if it is not yet, with copies of every ancestor not yet copied,
        each linked into its parents' copies (a walk up, then copies; no recursion)."""
        chain: list[Any] = []
        todo = [node]
        while todo:
            original = todo.pop()
            if id(original) in copies:
                continue
            copies[id(original)] = dict(original) if isinstance(original, dict) else list(original)
            chain.append(original)
            todo.extend(parent for parent, _ in parents[id(original)])
        for original in chain:
            for parent, key in parents[id(original)]:
                copies[id(parent)][key] = copies[id(original)]
        return copies[id(node)]

    def json_text(self, text: str) -> tuple[str, int]:
        """A JSON text cut short (a preview): credential shapes and values under secret-looking names
        replaced, and a credential that the cut left too short to recognise dropped from its end."""
        text, found = self.text(text)
        parts: list[str] = []
        done = 0
        for key in _JSON_KEY.finditer(text):
            if key.start() < done or not self.secret_name(key.group(1)):
                continue
            value = _JSON_VALUE.match(text, key.end())
            if value is None or value.group(0).startswith('"[redacted:'):
                continue
            parts += (text[done : key.end()], f'"{FIELD_MARKER}"')
            done, found = value.end(), found + 1
        if parts:
            text = "".join(parts) + text[done:]
        tail = _CUT_TAIL.search(text, max(len(text) - 300, 0))
        if tail is not None and (
            any(prefix in tail.group(0) for prefix in _CREDENTIAL_PREFIXES)
            or text[: tail.start()].rstrip().lower().endswith("bearer")
        ):
            text, found = text[: tail.start()], found + 1
        return text, found


@dataclass(frozen=True)
class ContentRule:
    """How the rows of one key and server are cleaned: not stored at all (``withheld`` says why),
    or stored through ``redactor``."""

    withheld: str | None
    redactor: Redactor


class AuditRules:
    """The audit rules of one policy, compiled once: per server a `Redactor` (the global names and
    patterns plus the server's own), and which keys and servers keep no content."""

    def __init__(
        self,
        audit: AuditSettings,
        servers: Iterable[tuple[str, ServerAuditSettings]] = (),
        keys_without_content: Iterable[str] = (),
    ) -> None:
        """``servers``: each server's name and audit settings."""
        self.default = Redactor(extra_keys=audit.redact_keys, extra_patterns=audit.redact_patterns)
        self._servers: dict[str, ContentRule] = {}
        for name, settings in servers:
            redactor = self.default
            if settings.redact_keys or settings.redact_patterns or settings.skip_kinds:
                redactor = Redactor(
                    extra_keys=[*audit.redact_keys, *settings.redact_keys],
                    extra_patterns=[*audit.redact_patterns, *settings.redact_patterns],
                    skip=settings.skip_kinds,
                )
            withheld = None
            if not settings.log_content:
                withheld = f"not logged: mcp.servers[{name}].audit.log_content is false"
            self._servers[name] = ContentRule(withheld, redactor)
        self._keys = frozenset(keys_without_content)
        self._anywhere = ContentRule(None, self.default)

    @classmethod
    def from_policy(cls, policy: GatewayPolicy) -> AuditRules:
        return cls(*AuditRules.inputs(policy))

    @staticmethod
    def inputs(policy: GatewayPolicy) -> AuditRuleInputs:
        """What the rules are made of: small and picklable (the writer process compiles its own)."""
        return (
            policy.gateway.audit,
            tuple((server.name, server.audit) for server in policy.mcp.servers),
            frozenset(key.id for key in policy.virtual_keys if not key.audit_content),
        )

    def for_row(self, key_id: str, server: str | None) -> ContentRule:
        rule = self._servers.get(server, self._anywhere) if server is not None else self._anywhere
        if key_id in self._keys and rule.withheld is None:
            return ContentRule(f"not logged: virtual key {key_id!r} has audit_content false", rule.redactor)
        return rule


AuditRuleInputs = tuple["AuditSettings", tuple[tuple[str, "ServerAuditSettings"], ...], frozenset[str]]
"""The audit settings, each server's name and audit settings, and the keys whose content is not logged."""

PolicySource = Callable[[], "GatewayPolicy"]
"""Where the writer reads the current policy (the composition root passes the live snapshot's)."""
