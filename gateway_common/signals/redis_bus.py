"""The bus over Redis pub/sub: one channel under ``counters.key_prefix``, shared by every replica.

Publishing uses the short-timeout client of `gateway_common.redis_connection`: a
Redis that cannot be reached makes `publish` return False at once (each process still
polls the database for key changes, so a lost key message costs at most that poll).
Listening is a task with a connection of its own that waits for messages without a
read timeout, pings Redis every `PING_SECONDS` and counts the connection as lost
when nothing (not even the pong) came back for `STALE_SECONDS`. A lost connection is
retried with exponential backoff (`BACKOFF_FIRST` doubling up to `BACKOFF_MAX`),
forever, without ever raising into the gateway; each time the subscription is in
place again, subscribers get a `RESYNC` change, since messages sent meanwhile are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from gateway_common.redis_connection import open_redis, redis_key
from gateway_common.signals.bus import RESYNC, BusState, Change, Dispatcher, Handler, new_origin
from policies.bounds import MAX_ERROR_CHARS, clip
from policies.counters_settings import CountersSettings

logger = logging.getLogger("gateway_common.signals")

CHANNEL = "changes"
MAX_MESSAGE_BYTES = 64 * 1024
"""A message larger than this is not ours (ours are a few hundred bytes): ignored."""
PING_SECONDS = 5.0
STALE_SECONDS = 15.0
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0


def encode(change: Change) -> bytes:
    return orjson.dumps({"kind": change.kind, "origin": change.origin, "payload": dict(change.payload)})


def decode(data: bytes) -> Change | None:
    """The change in a message, or None for anything that is not one (logged by the caller)."""
    if len(data) > MAX_MESSAGE_BYTES:
        return None
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    kind, origin, payload = message.get("kind"), message.get("origin"), message.get("payload")
    if not isinstance(kind, str) or not isinstance(origin, str) or not isinstance(payload, dict):
        return None
    if kind == RESYNC:
        return None  # only made locally
    return Change(kind[:64], payload, origin[:128])


class RedisBus:
    def __init__(
        self,
        settings: CountersSettings,
        *,
        origin: str | None = None,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        ping_seconds: float = PING_SECONDS,
        stale_seconds: float = STALE_SECONDS,
    ) -> None:
        self.origin = origin or new_origin()
        self.settings = settings
        self.channel = redis_key(settings, CHANNEL)
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.ping_seconds = ping_seconds
        self.stale_seconds = stale_seconds
        self._publisher: Redis | None = None
        self._dispatch = Dispatcher()
        self._state: BusState = "connecting"
        self._listener: asyncio.Task[None] | None = None
        self.connects = 0
        """How many times the subscription was (re)established."""
        self.last_error: str | None = None
        self.publish_failures = 0
        self._connected = asyncio.Event()
        self._had_connection = False

    @property
    def state(self) -> BusState:
        return self._state

    async def start(self) -> None:
        if self._listener is None:
            self._publisher = open_redis(self.settings)
            self._listener = asyncio.create_task(self._listen(), name="change-bus")

    async def wait_connected(self, timeout: float) -> bool:
        """Whether the subscription is in place within ``timeout`` seconds (for start-up and tests)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self._state == "connected"

    # -- publishing ----------------------------------------------------------------------

    async def publish(self, kind: str, payload: Mapping[str, Any]) -> bool:
        if self._publisher is None or self._state == "closed":
            return False
        try:
            await self._publisher.publish(self.channel, encode(Change(kind, payload, self.origin)))
        except (RedisError, OSError, TimeoutError) as exc:
            self.publish_failures += 1
            logger.warning(
                "could not publish the change %r on Redis (the other replicas see it on their next "
                "database poll or resync): %s",
                kind,
                _describe(exc),
            )
            return False
        return True

    # -- listening -----------------------------------------------------------------------

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        return self._dispatch.subscribe(handler)

    def _subscriber(self) -> Redis:
        timeout = self.settings.timeout_ms / 1000
        assert self.settings.url is not None
        return Redis.from_url(
            self.settings.url,
            socket_connect_timeout=timeout,
            socket_timeout=None,  # waiting for messages; `_listen` watches the connection itself
            retry=Retry(NoBackoff(), 0),  # a lost connection is `_listen`'s to handle (and resync)
            decode_responses=False,
        )

    async def _listen(self) -> None:
        delay = self.backoff_first
        while True:
            client = self._subscriber()
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                await self._receive(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                self._lost(_describe(exc))
            except Exception as exc:  # never let the bus end the gateway
                logger.exception("the change bus failed; reconnecting")
                self._lost(_describe(exc))
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            if self._had_connection:  # it worked until now: the next attempt comes soon
                delay, self._had_connection = self.backoff_first, False
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff_max)

    def _lost(self, error: str) -> None:
        was = self._state
        self._state = "reconnecting"
        self._connected.clear()
        self.last_error = clip(error, MAX_ERROR_CHARS)
        if was == "connected":
            logger.warning("change bus: lost Redis (%s); reconnecting with backoff", self.last_error)
        elif was == "connecting":
            logger.warning("change bus: cannot reach Redis (%s); retrying with backoff", self.last_error)

    async def _receive(self, pubsub: PubSub) -> None:
        last_heard = time.monotonic()
        last_ping = last_heard
        subscribed = False
        while True:
            message = await pubsub.get_message(timeout=min(1.0, self.ping_seconds))
            now = time.monotonic()
            if message is not None:
                last_heard = now
                kind = message.get("type")
                if kind == "subscribe" and not subscribed:
                    subscribed = True
                    self._up()
                elif kind in ("message", b"message"):
                    self._hear(message.get("data"))
            if now - last_heard > self.stale_seconds:
                raise TimeoutError(f"Redis did not answer for {self.stale_seconds:g} s")
            if now - last_ping >= self.ping_seconds:
                last_ping = now
                await pubsub.ping()

    def _up(self) -> None:
        if self._state == "reconnecting":
            logger.info("change bus: connected to Redis again; refreshing everything (messages may be lost)")
        self._state = "connected"
        self._had_connection = True
        self.connects += 1
        self.last_error = None
        self._connected.set()
        self._dispatch.dispatch(Change(RESYNC, {}, ""))

    def _hear(self, data: object) -> None:
        change = decode(data) if isinstance(data, bytes) else None
        if change is None:
            logger.warning("change bus: ignored a message that is not a change on %s", self.channel)
            return
        if change.origin != self.origin:
            self._dispatch.dispatch(change)

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = {"backend": "redis", "state": self._state, "connects": self.connects}
        if self.last_error is not None:
            body["last_error"] = self.last_error
        if self.publish_failures:
            body["publish_failures"] = self.publish_failures
        return body

    async def aclose(self) -> None:
        self._state = "closed"
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._dispatch.aclose()
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.aclose()


def publish_once(settings: CountersSettings, kind: str, payload: Mapping[str, Any]) -> bool:
    """Publish one change from a process that is not a gateway (the ``keys`` commands), blocking for at
    most ``timeout_ms`` twice; False (logged) if Redis could not be reached."""
    import redis

    timeout = settings.timeout_ms / 1000
    assert settings.url is not None
    client = redis.Redis.from_url(settings.url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.publish(redis_key(settings, CHANNEL), encode(Change(kind, payload, new_origin())))
    except (RedisError, OSError) as exc:
        logger.warning("could not publish the change %r on Redis: %s", kind, _describe(exc))
        return False
    finally:
        client.close()
    return True


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
