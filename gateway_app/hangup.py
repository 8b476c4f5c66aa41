"""SIGHUP reloads the policy file of a running ``serve`` (uvicorn handles SIGINT and SIGTERM only;
left alone, SIGHUP would end the process at once, without a log line)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from gateway_app.reload import ReloadRequests

logger = logging.getLogger("mcp_gateway")


class HangupReload:
    """Turns SIGHUP into a reload request. Installed when ``serve`` builds its server (a signal that
    early is held until the gateway is up), handed to the event loop while it runs (`handled`)."""

    def __init__(self, reloads: ReloadRequests, stopping: Callable[[], bool]) -> None:
        self._reloads = reloads
        self._stopping = stopping
        self._before: Any = None
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            self._before = signal.signal(signal.SIGHUP, lambda sig, frame: self._hangup())

    def _hangup(self) -> None:
        if self._stopping():
            logger.warning("SIGHUP while stopping: no reload")
            return
        logger.info("SIGHUP: reloading the policy file")
        self._reloads.request("signal")

    @contextlib.asynccontextmanager
    async def handled(self) -> AsyncIterator[None]:
        """While the event loop runs, SIGHUP goes through it (asyncio's safe signal handling)."""
        if self._before is None:
            yield
            return
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._hangup)
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            signal.signal(signal.SIGHUP, self._before)
