"""The filesystem example server: confined reads and writes, through a real MCP client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mcp import Client

from examples.servers.filesystem import MAX_FILE_BYTES, build_server
from tests.examples._support import error_text, stdio_params, text

pytestmark = pytest.mark.anyio


@pytest.fixture
def root(tmp_path: Path) -> Path:
    served = tmp_path / "root"
    (served / "docs").mkdir(parents=True)
    (served / "docs" / "readme.md").write_text("# Hello\nnaïve café\n", encoding="utf-8")
    (served / "empty.txt").write_text("")
    return served


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret_dir = tmp_path / "outside"
    secret_dir.mkdir()
    (secret_dir / "secret.txt").write_text("do not leak")
    return secret_dir


async def test_tools_are_listed_with_annotations(root: Path) -> None:
    async with Client(build_server(root)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {"read_file", "write_file", "list_directory"}
    for name in ("read_file", "list_directory"):
        annotations = tools[name].annotations
        assert annotations is not None
        assert annotations.read_only_hint is True
    write = tools["write_file"].annotations
    assert write is not None
    assert write.read_only_hint is False
    assert write.destructive_hint is True
    assert tools["write_file"].input_schema["required"] == ["path", "content"]
    assert all(tool.description for tool in tools.values())


async def test_read_write_and_list(root: Path) -> None:
    async with Client(build_server(root)) as client:
        read = await client.call_tool("read_file", {"path": "docs/readme.md"})
        created = await client.call_tool("write_file", {"path": "notes/new/todo.txt", "content": "ship it\n"})
        replaced = await client.call_tool("write_file", {"path": "empty.txt", "content": "now full"})
        reread = await client.call_tool("read_file", {"path": "notes/new/todo.txt"})
        listing = await client.call_tool("list_directory", {})
        sub = await client.call_tool("list_directory", {"path": "docs"})

    assert text(read) == "# Hello\nnaïve café\n"
    assert created.structured_content == {"path": "notes/new/todo.txt", "bytes_written": 8, "created": True}
    assert replaced.structured_content == {"path": "empty.txt", "bytes_written": 8, "created": False}
    assert (root / "notes" / "new" / "todo.txt").read_text() == "ship it\n"
    assert (root / "empty.txt").read_text() == "now full"
    assert text(reread) == "ship it\n"
    assert listing.structured_content == {
        "path": ".",
        "entries": [
            {"name": "docs", "type": "dir", "size": None},
            {"name": "empty.txt", "type": "file", "size": 8},
            {"name": "notes", "type": "dir", "size": None},
        ],
    }
    assert sub.structured_content == {
        "path": "docs",
        "entries": [{"name": "readme.md", "type": "file", "size": len("# Hello\nnaïve café\n".encode())}],
    }
    # Writes go through a temp file + rename; nothing of it may be left behind.
    assert sorted(p.name for p in root.iterdir()) == ["docs", "empty.txt", "notes"]


@pytest.mark.parametrize("path", ["../outside/secret.txt", "docs/../../outside/secret.txt", ".."])
async def test_traversal_is_refused(root: Path, outside: Path, path: str) -> None:
    async with Client(build_server(root)) as client:
        read = await client.call_tool("read_file", {"path": path})
        write = await client.call_tool("write_file", {"path": path, "content": "pwned"})
        listing = await client.call_tool("list_directory", {"path": path})

    for result in (read, write, listing):
        assert f"path {path!r} is outside the served root" in error_text(result)
    assert (outside / "secret.txt").read_text() == "do not leak"


async def test_absolute_paths_are_refused(root: Path, outside: Path) -> None:
    secret = str(outside / "secret.txt")
    async with Client(build_server(root)) as client:
        read = await client.call_tool("read_file", {"path": secret})
        write = await client.call_tool("write_file", {"path": "/etc/passwd", "content": "x"})

    assert "is absolute; paths are relative to the served root" in error_text(read)
    assert "'/etc/passwd' is absolute" in error_text(write)


async def test_symlinks_resolving_outside_are_refused(root: Path, outside: Path) -> None:
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "secret-link.txt").symlink_to(outside / "secret.txt")
    (root / "inside-link.md").symlink_to(root / "docs" / "readme.md")
    async with Client(build_server(root)) as client:
        via_dir = await client.call_tool("read_file", {"path": "escape/secret.txt"})
        via_file = await client.call_tool("read_file", {"path": "secret-link.txt"})
        write_through = await client.call_tool("write_file", {"path": "secret-link.txt", "content": "pwned"})
        write_new = await client.call_tool("write_file", {"path": "escape/new.txt", "content": "pwned"})
        list_through = await client.call_tool("list_directory", {"path": "escape"})
        inside = await client.call_tool("read_file", {"path": "inside-link.md"})
        listing = await client.call_tool("list_directory", {})

    for result, path in [
        (via_dir, "escape/secret.txt"),
        (via_file, "secret-link.txt"),
        (write_through, "secret-link.txt"),
        (write_new, "escape/new.txt"),
        (list_through, "escape"),
    ]:
        assert f"path {path!r} is outside the served root" in error_text(result)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "do not leak"
    # A link that stays inside the root is just a path.
    assert text(inside).startswith("# Hello")
    assert listing.structured_content is not None
    types = {entry["name"]: entry["type"] for entry in listing.structured_content["entries"]}
    assert types["escape"] == "symlink"
    assert types["secret-link.txt"] == "symlink"


async def test_read_refuses_binary_large_missing_and_directories(root: Path) -> None:
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (root / "big.txt").write_bytes(b"a" * (MAX_FILE_BYTES + 1))
    async with Client(build_server(root)) as client:
        binary = await client.call_tool("read_file", {"path": "image.png"})
        big = await client.call_tool("read_file", {"path": "big.txt"})
        missing = await client.call_tool("read_file", {"path": "nope.txt"})
        directory = await client.call_tool("read_file", {"path": "docs"})
        write_dir = await client.call_tool("write_file", {"path": "docs", "content": "x"})
        too_much = await client.call_tool(
            "write_file", {"path": "huge.txt", "content": "a" * (MAX_FILE_BYTES + 1)}
        )
        list_file = await client.call_tool("list_directory", {"path": "empty.txt"})

    assert "'image.png' is not UTF-8 text" in error_text(binary)
    assert f"limited to {MAX_FILE_BYTES} bytes" in error_text(big)
    assert "'nope.txt' does not exist" in error_text(missing)
    assert "'docs' is not a regular file" in error_text(directory)
    assert "'docs' is a directory" in error_text(write_dir)
    assert "write_file is limited to" in error_text(too_much)
    assert not (root / "huge.txt").exists()
    assert "'empty.txt' is not a directory" in error_text(list_file)


async def test_symlink_loops_and_unreadable_files_are_clear_errors(root: Path) -> None:
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")
    locked = root / "locked.txt"
    locked.write_text("secret")
    locked.chmod(0)
    try:
        async with Client(build_server(root)) as client:
            loop = await client.call_tool("read_file", {"path": "loop-a"})
            denied = await client.call_tool("read_file", {"path": "locked.txt"})
    finally:
        locked.chmod(0o600)

    assert "path 'loop-a' cannot be resolved" in error_text(loop)
    if os.geteuid() != 0:  # root reads mode-000 files anyway
        assert "cannot read 'locked.txt': Permission denied" in error_text(denied)


async def test_write_keeps_existing_file_mode(root: Path) -> None:
    script = root / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o750)
    async with Client(build_server(root)) as client:
        result = await client.call_tool("write_file", {"path": "run.sh", "content": "#!/bin/sh\necho hi\n"})

    assert not result.is_error
    assert script.stat().st_mode & 0o777 == 0o750


def test_root_defaults_to_env_and_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "from-env" / "files"
    monkeypatch.setenv("FILESYSTEM_ROOT", str(target))
    build_server()
    assert target.is_dir()


async def test_runs_as_stdio_subprocess(root: Path) -> None:
    async with Client(stdio_params("filesystem", "--root", os.fspath(root))) as client:
        listing = await client.call_tool("list_directory", {"path": "docs"})
        traversal = await client.call_tool("read_file", {"path": "../../etc/passwd"})

    assert listing.structured_content is not None
    assert [entry["name"] for entry in listing.structured_content["entries"]] == ["readme.md"]
    assert "outside the served root" in error_text(traversal)
