"""Atomic file replacement shared by the example servers that write files."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path


def temp_sibling(path: Path) -> Path:
    """A fresh hidden name next to ``path``: same filesystem, so os.replace is atomic."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new content, never a mix.

    An existing file keeps its permission bits; a new one gets the usual umask-derived mode
    (unlike tempfile.mkstemp, which would leave every written file 0600).
    """
    tmp = temp_sibling(path)
    try:
        keep_mode: int | None = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        keep_mode = None
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            if keep_mode is not None:
                os.fchmod(handle.fileno(), keep_mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
