"""Environment references in a policy file, expanded once, when the file is loaded.

The rule, for every string value anywhere in the file (mapping keys are left alone):

- ``${NAME}`` is the value of the environment variable ``NAME``; unset is an error;
- ``${NAME:-default}`` is its value, or ``default`` when it is unset or empty;
- ``$$`` is a literal ``$`` (so ``$${NAME}`` is the text ``${NAME}``);
- any other ``$`` is kept as it is; a ``${`` that is not a valid reference is an error.

Expanding before validation means every field is validated with the value the
gateway will use: a ``database_url: ${DB_URL}`` whose variable holds a bad URL
is refused by ``mcp-gateway check`` exactly as by ``serve``. Numbers and booleans
may come from the environment too (``port: ${PORT:-8080}``): the expanded text is
validated against the field's type.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from policies.errors import ConfigError, ConfigIssue
from policies.yaml_source import DocPath, LocatedDocument, format_path

_TOKEN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


class UnsetVariable(ValueError):
    """A reference to a variable that is not set and has no default."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
        )
        self.name = name


class BadReference(ValueError):
    """A ``${`` that does not start a ``${NAME}`` or ``${NAME:-default}`` reference."""

    def __init__(self) -> None:
        super().__init__(
            "'${' must start ${NAME} or ${NAME:-default} (NAME: letters, digits, _); write $$ for a literal $"
        )


def expand(value: str, environ: Mapping[str, str] | None = None) -> str:
    """``value`` with its references replaced; raises `UnsetVariable` or `BadReference`."""
    if "$" not in value:
        return value
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name is None:
            raise BadReference
        current = env.get(name)
        if current:
            return current
        if default is not None:
            return default
        if current is not None:  # set but empty, and no default: the empty string is what was asked for
            return current
        raise UnsetVariable(name)

    return _TOKEN.sub(substitute, value)


def expand_document(doc: LocatedDocument, environ: Mapping[str, str] | None = None) -> LocatedDocument:
    """A copy of ``doc`` with every string value expanded; every failure is reported with its line."""
    issues: list[ConfigIssue] = []

    def walk(node: Any, path: DocPath) -> Any:
        if isinstance(node, str):
            try:
                return expand(node, environ)
            except ValueError as exc:
                issues.append(ConfigIssue(format_path(path), str(exc), doc.line_for(path)))
                return node
        if isinstance(node, dict):
            return {key: walk(value, (*path, str(key))) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item, (*path, index)) for index, item in enumerate(node)]
        return node

    data = walk(doc.data, ())
    if issues:
        raise ConfigError(issues, doc.source)
    return LocatedDocument(data, doc.lines, doc.source)
