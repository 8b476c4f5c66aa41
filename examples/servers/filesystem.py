"""Example upstream: read, write and list UTF-8 text files confined to one root directory.

Paths are always relative to the served root. Absolute paths are refused rather than
re-rooted, so a model that guesses a host path gets a clear error instead of silently
touching a different file. ``..`` segments and symlinks are resolved first and the
result must stay inside the root, so neither can be used to escape it.

Run alone: ``python -m examples.servers.filesystem --root DIR [--transport http --port N]``.
"""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from examples.servers import _cli
from examples.servers._atomic import atomic_write

DEFAULT_ROOT = Path("data/files")
MAX_FILE_BYTES = 1024 * 1024
"""Cap on read_file and write_file: a model context is no place for bigger files."""

RelPath = Annotated[str, Field(description='Path relative to the served root, e.g. "notes/todo.md"')]


class Entry(BaseModel):
    """One directory entry, as list_directory reports it."""

    name: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int | None
    """Size in bytes for files; None for everything else."""


class Listing(BaseModel):
    path: str
    entries: list[Entry]


class WriteResult(BaseModel):
    path: str
    bytes_written: int
    created: bool


class Sandbox:
    """Maps caller-supplied relative paths to real paths that are guaranteed inside ``root``."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve(strict=True)
        if not self.root.is_dir():
            raise ValueError(f"root {root} is not a directory")

    def resolve(self, path: str) -> Path:
        """Return the real target of ``path``, or raise ToolError if it leaves the root."""
        if "\x00" in path:
            raise ToolError(f"path {path!r} contains a NUL byte")
        if Path(path).is_absolute():
            raise ToolError(f"path {path!r} is absolute; paths are relative to the served root")
        # resolve() follows every symlink on the way, so a link pointing outside lands outside.
        try:
            target = (self.root / path).resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on Python < 3.13
            raise ToolError(f"path {path!r} cannot be resolved: {exc}") from None
        if not target.is_relative_to(self.root):
            raise ToolError(f"path {path!r} is outside the served root")
        return target

    def display(self, target: Path) -> str:
        """Show ``target`` relative to the root, the only form callers ever see."""
        return target.relative_to(self.root).as_posix() or "."


@contextmanager
def _os_errors(action: str, path: str) -> Iterator[None]:
    """Turn an OS failure (permissions, disk full...) into a tool error naming the relative path only."""
    try:
        yield
    except OSError as exc:
        raise ToolError(f"cannot {action} {path!r}: {exc.strerror or exc}") from None


def read_text(sandbox: Sandbox, path: str) -> str:
    target = sandbox.resolve(path)
    try:
        info = target.stat()
    except FileNotFoundError:
        raise ToolError(f"file {path!r} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise ToolError(f"path {path!r} is not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise ToolError(
            f"file {path!r} is {info.st_size} bytes; read_file is limited to {MAX_FILE_BYTES} bytes"
        )
    with target.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:  # grew between stat() and read()
        raise ToolError(f"file {path!r} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolError(f"file {path!r} is not UTF-8 text (binary data at byte {exc.start})") from None


def write_text(sandbox: Sandbox, path: str, content: str) -> WriteResult:
    target = sandbox.resolve(path)
    if target == sandbox.root or target.is_dir():
        raise ToolError(f"path {path!r} is a directory")
    data = content.encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise ToolError(f"content is {len(data)} bytes; write_file is limited to {MAX_FILE_BYTES} bytes")
    # Parents are created inside the root only: target already resolved within it.
    target.parent.mkdir(parents=True, exist_ok=True)
    created = not target.exists()
    atomic_write(target, data)  # readers never see a half-written file
    return WriteResult(path=sandbox.display(target), bytes_written=len(data), created=created)


def list_entries(sandbox: Sandbox, path: str) -> Listing:
    target = sandbox.resolve(path)
    if not target.exists():
        raise ToolError(f"directory {path!r} does not exist")
    if not target.is_dir():
        raise ToolError(f"path {path!r} is not a directory")
    entries: list[Entry] = []
    for child in sorted(target.iterdir(), key=lambda p: p.name):
        info = child.lstat()  # lstat: report a symlink as such, never follow it here
        if stat.S_ISREG(info.st_mode):
            entries.append(Entry(name=child.name, type="file", size=info.st_size))
        elif stat.S_ISDIR(info.st_mode):
            entries.append(Entry(name=child.name, type="dir", size=None))
        elif stat.S_ISLNK(info.st_mode):
            entries.append(Entry(name=child.name, type="symlink", size=None))
        else:
            entries.append(Entry(name=child.name, type="other", size=None))
    return Listing(path=sandbox.display(target), entries=entries)


def build_server(root: Path | str | None = None) -> MCPServer:
    """Build the server; ``root`` defaults to $FILESYSTEM_ROOT, then ./data/files (created if missing)."""
    chosen = Path(root) if root is not None else Path(os.environ.get("FILESYSTEM_ROOT") or DEFAULT_ROOT)
    sandbox = Sandbox(chosen)
    mcp = MCPServer(
        "example-filesystem",
        version="0.1.0",
        instructions=(
            "Text files under one served root directory. All paths are relative to that root; "
            "absolute paths and paths that leave the root are refused."
        ),
    )

    @mcp.tool(
        title="Read file",
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
        structured_output=False,
    )
    def read_file(path: RelPath) -> str:
        """Return the full contents of a UTF-8 text file (at most 1 MiB).

        `path` is relative to the served root, e.g. "notes/todo.md". Binary files,
        directories and paths outside the root are refused with an error.
        """
        with _os_errors("read", path):
            return read_text(sandbox, path)

    @mcp.tool(
        title="Write file",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    def write_file(
        path: RelPath, content: Annotated[str, Field(description="Full new file contents (UTF-8 text)")]
    ) -> WriteResult:
        """Create or overwrite a UTF-8 text file with `content` (at most 1 MiB).

        `path` is relative to the served root; missing parent directories are created.
        An existing file is replaced entirely, so read it first if you mean to edit it.
        """
        with _os_errors("write", path):
            return write_text(sandbox, path, content)

    @mcp.tool(
        title="List directory",
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    def list_directory(path: RelPath = ".") -> Listing:
        """List a directory's entries with their type (file, dir, symlink, other) and size in bytes.

        `path` is relative to the served root; the default "." lists the root itself.
        """
        with _os_errors("list", path):
            return list_entries(sandbox, path)

    return mcp


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.base_parser(
        "examples.servers.filesystem", "Serve one directory's text files over MCP.", default_port=8101
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="directory to serve (default: $FILESYSTEM_ROOT, else ./data/files; created if missing)",
    )

    def build(args: argparse.Namespace) -> MCPServer:
        return build_server(args.root)

    _cli.main(parser, build, argv)


if __name__ == "__main__":
    main()
