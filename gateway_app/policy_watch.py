"""Reload the policy file when it changes (``gateway.watch_policy_file: true``).

Polling, not inotify: one ``stat`` a second costs nothing, needs no dependency and sees
every way a file gets replaced (written in place, renamed over, a ConfigMap's symlink
swap). A change (modification time, size or inode) is read once the file has stopped
changing for `DEBOUNCE_SECONDS`, and reloaded only if its content differs from what the
last reload read (its SHA-256): a save that rewrites the same bytes, or a file a SIGHUP
already reloaded, costs nothing; a broken file is refused once, not every second.
The setting is read from the policy in force, so a reload can turn watching on or off.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from gateway_app.reload import Reloader, digest

logger = logging.getLogger("gateway_app.reload")

POLL_SECONDS = 1.0
DEBOUNCE_SECONDS = 0.5

Signature = tuple[int, int, int]


def _signature(path: Path) -> Signature | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # being replaced, or gone: wait for it to come back
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _content_digest(path: Path) -> str | None:
    try:
        return digest(path.read_bytes())
    except OSError:
        return None


async def watch_policy_file(
    reloader: Reloader,
    path: Path,
    enabled: Callable[[], bool],
    *,
    poll: float = POLL_SECONDS,
    debounce: float = DEBOUNCE_SECONDS,
) -> None:
    """Run until cancelled: reload ``path`` (trigger ``watch``) whenever its content changes."""
    seen = _signature(path)
    while True:
        await asyncio.sleep(poll)
        if not enabled():
            seen = None  # once turned on, compare the content with what was last read
            continue
        current = _signature(path)
        if current is None or current == seen:
            continue
        await asyncio.sleep(debounce)
        if _signature(path) != current:
            continue  # still being written: look again at the next poll
        seen = current
        content = await asyncio.to_thread(_content_digest, path)
        if content is None or content == reloader.last_digest:
            continue
        logger.info("policy file %s changed: reloading", path)
        await reloader.reload("watch")
