"""`RespScripts`, the counter store's own EVALSHA client, beyond the counter store contract it passes
with redis-py (tests/counters/conftest.py): replies split anywhere, many calls pipelined on one
connection, callers that give up, a server killed and restarted mid-run, a server that goes silent.

Real servers throughout: a ``redis-server`` of the test's own, or (to split replies and hold them
back at will) a scripted TCP server speaking RESP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway_common.counters.resp_scripts import RespScripts, _parse, pack
from tests.redis_support import OwnRedis, own_redis_server

pytestmark = pytest.mark.anyio
ECHO = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) * 2, {ARGV[3]}}"
"""Answers with what it was sent: each caller can tell its reply from another's."""


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """Both loops: the gateway serves on uvloop, whose transports start differently."""
    return ("asyncio", {"use_uvloop": request.param == "uvloop"})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OwnRedis]:
    with own_redis_server(tmp_path) as running:
        yield running


class Scripted:
    """A TCP server that records each command it gets and sends only the bytes the test tells it to."""

    def __init__(self) -> None:
        self.commands: asyncio.Queue[list[bytes]] = asyncio.Queue()
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        buffer = b""
        while data := await reader.read(65536):
            buffer += data
            while buffer:
                try:
                    command, end = _parse(buffer, 0)
                except Exception:  # an incomplete command: wait for the rest
                    break
                buffer = buffer[end:]
                await self.commands.put(command)

    async def reply(self, data: bytes, *, split: bool = False) -> None:
        """Send ``data`` on the newest connection, one byte per write (and a pause) when ``split``."""
        writer = self.writers[-1]
        for piece in [data[i : i + 1] for i in range(len(data))] if split else [data]:
            writer.write(piece)
            await writer.drain()
            if split:
                await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def scripted() -> AsyncIterator[Scripted]:
    fake = Scripted()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        for writer in fake.writers:
            writer.close()
        server.close()
        await server.wait_closed()


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    assert pack((b"EVALSHA", "ab", 2, 0.1, 1e100, -3)) == (
        b"*6\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n$3\r\n0.1\r\n$6\r\n1e+100\r\n$2\r\n-3\r\n"
    )


async def test_replies_split_at_every_byte_reach_the_right_callers() -> None:
    reply_a = b"*4\r\n$1\r\na\r\n:-12\r\n$-1\r\n*2\r\n*0\r\n$0\r\n\r\n"
    reply_b = b"-ERR something broke\r\n"
    reply_c = b"+OK\r\n"
    async with scripted() as fake:
        client = RespScripts("127.0.0.1", fake.port)
        try:
            calls = [asyncio.ensure_future(client.call(("PING", n))) for n in range(3)]
            for _ in range(3):
                await asyncio.wait_for(fake.commands.get(), 5)
            await fake.reply(reply_a + reply_b + reply_c, split=True)
            a, b, c = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        finally:
            await client.aclose()
    assert a == [b"a", -12, None, [[], b""]]
    assert isinstance(b, ResponseError) and str(b) == "ERR something broke"
    assert c == b"OK"


async def test_a_caller_that_gives_up_leaves_its_reply_to_be_dropped() -> None:
    async with scripted() as fake:
        client = RespScripts("127.0.0.1", fake.port, stale_after=10.0)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await client.call(("GET", "first"))
            second = asyncio.ensure_future(client.call(("GET", "second")))
            assert await asyncio.wait_for(fake.commands.get(), 5) == [b"GET", b"first"]
            assert await asyncio.wait_for(fake.commands.get(), 5) == [b"GET", b"second"]
            await fake.reply(b"$5\r\nfirst\r\n$6\r\nsecond\r\n")
            assert await asyncio.wait_for(second, 5) == b"second", "the reply in its own place, not the first"
            assert len(fake.writers) == 1, "one connection throughout"
        finally:
            await client.aclose()


async def test_a_silent_server_fails_the_call_in_time_and_is_left_for_a_new_connection() -> None:
    """No caller timeout here: the client bounds each call itself (``stale_after``)."""
    loop = asyncio.get_running_loop()
    async with scripted() as fake:
        client = RespScripts("127.0.0.1", fake.port, stale_after=0.05)
        try:
            first = asyncio.ensure_future(client.call(("GET", "first")))
            assert await asyncio.wait_for(fake.commands.get(), 5) == [b"GET", b"first"]
            await fake.reply(b"$5\r\nfirst\r\n")
            assert await asyncio.wait_for(first, 5) == b"first"
            # Connected: two calls a moment apart, no answer. Both fail once the older is overdue.
            started = loop.time()
            lost = asyncio.ensure_future(client.call(("GET", "lost")))
            await asyncio.sleep(0.02)
            later = asyncio.ensure_future(client.call(("GET", "later")))
            for call in (lost, later):
                with pytest.raises(RedisTimeoutError, match=r"no reply from Redis within 0\.05 s"):
                    await asyncio.wait_for(call, 5)
            assert 0.05 <= loop.time() - started < 1.0
            again = asyncio.ensure_future(client.call(("GET", "again")))
            for expected in ([b"GET", b"lost"], [b"GET", b"later"], [b"GET", b"again"]):
                assert await asyncio.wait_for(fake.commands.get(), 5) == expected
            assert len(fake.writers) == 2, "the stuck connection was dropped and a new one opened"
            await fake.reply(b"$5\r\nagain\r\n")
            assert await asyncio.wait_for(again, 5) == b"again"
        finally:
            await client.aclose()


async def test_replies_in_time_keep_the_connection_past_the_watchdog() -> None:
    """The watchdog looks at the oldest reply awaited, not at how long the connection has lived."""
    async with scripted() as fake:
        client = RespScripts("127.0.0.1", fake.port, stale_after=0.05)
        try:
            for _ in range(4):
                call = asyncio.ensure_future(client.call(("PING",)))
                assert await asyncio.wait_for(fake.commands.get(), 5) == [b"PING"]
                await fake.reply(b"+PONG\r\n")
                assert await asyncio.wait_for(call, 5) == b"PONG"
                await asyncio.sleep(0.03)  # 0.12 s in all: past the first call's deadline, twice
            assert len(fake.writers) == 1
        finally:
            await client.aclose()


async def test_connecting_is_bounded_too() -> None:
    """A server that accepts but never answers the AUTH: the call fails by ``connect_timeout``."""
    async with scripted() as fake:
        client = RespScripts("127.0.0.1", fake.port, password="p", connect_timeout=0.05, stale_after=10.0)
        try:
            with pytest.raises(RedisTimeoutError, match=r"within 0\.05 s"):
                await asyncio.wait_for(client.call(("PING",)), 5)
        finally:
            await client.aclose()


async def test_a_password_and_database_are_sent_before_the_first_command() -> None:
    async with scripted() as fake:
        client = RespScripts.from_url(f"redis://us%3Aer:p%40ss@127.0.0.1:{fake.port}/3", 1.0)
        assert client is not None
        try:
            call = asyncio.ensure_future(client.call(("PING",)))
            assert await asyncio.wait_for(fake.commands.get(), 5) == [b"AUTH", b"us:er", b"p@ss"]
            assert await asyncio.wait_for(fake.commands.get(), 5) == [b"SELECT", b"3"]
            await fake.reply(b"+OK\r\n+OK\r\n")
            assert await asyncio.wait_for(fake.commands.get(), 5) == [b"PING"]
            await fake.reply(b"+PONG\r\n")
            assert await asyncio.wait_for(call, 5) == b"PONG"
        finally:
            await client.aclose()


async def test_a_refused_password_fails_the_call() -> None:
    async with scripted() as fake:
        client = RespScripts("127.0.0.1", fake.port, password="wrong")
        try:
            call = asyncio.ensure_future(client.call(("PING",)))
            assert await asyncio.wait_for(fake.commands.get(), 5) == [b"AUTH", b"wrong"]
            await fake.reply(b"-WRONGPASS invalid username-password pair\r\n")
            with pytest.raises(ResponseError, match="WRONGPASS"):
                await asyncio.wait_for(call, 5)
        finally:
            await client.aclose()


def test_only_plain_redis_urls_are_spoken() -> None:
    assert RespScripts.from_url("redis://127.0.0.1:6390/2", 1.0) is not None
    for url in ("rediss://127.0.0.1/0", "unix:///tmp/redis.sock", "redis://h/0?protocol=3", "redis://h/x"):
        assert RespScripts.from_url(url, 1.0) is None, url


async def test_hundreds_of_concurrent_calls_pipeline_on_one_connection(server: OwnRedis) -> None:
    client = RespScripts.from_url(server.url, 5.0)
    assert client is not None
    echo = client.register_script(ECHO)
    try:
        replies = await asyncio.gather(
            *(echo(keys=[f"k{n}"], args=[f"a{n}", n, n * 0.5]) for n in range(500))
        )
        assert replies == [
            [f"k{n}".encode(), f"a{n}".encode(), n * 2, [repr(n * 0.5).encode()]] for n in range(500)
        ]
        conn = client._conn
        assert conn is not None and not conn.waiting
    finally:
        await client.aclose()


async def test_a_server_killed_and_restarted_mid_run(server: OwnRedis) -> None:
    """Calls in flight fail as connection errors, calls while it is down fail at once, and after the
    restart (an empty script cache) the same client answers again without being told."""
    client = RespScripts.from_url(server.url, 1.0)
    assert client is not None
    echo = client.register_script(ECHO)
    outcomes: list[Any] = []
    stop = asyncio.Event()

    async def caller(n: int) -> None:
        count = 0
        while not stop.is_set():
            count += 1
            try:
                reply = await echo(keys=[f"k{n}"], args=[f"c{count}", count, 1])
            except (RedisConnectionError, OSError) as exc:
                outcomes.append(type(exc))
                await asyncio.sleep(0.01)
            else:
                assert reply == [f"k{n}".encode(), f"c{count}".encode(), count * 2, [b"1"]]
                outcomes.append("ok")

    callers = [asyncio.ensure_future(caller(n)) for n in range(20)]
    try:
        await asyncio.sleep(0.2)
        assert "ok" in outcomes
        before = len(outcomes)
        server.stop()
        await asyncio.sleep(0.3)
        failed = outcomes[before:]
        assert failed and all(outcome != "ok" for outcome in failed[len(callers) :]), (
            "nothing answered while down"
        )
        assert RedisConnectionError in failed or ConnectionRefusedError in failed
        server.start()
        restarted = len(outcomes)
        for _ in range(300):
            if outcomes[restarted:].count("ok") >= 100:
                break
            await asyncio.sleep(0.01)
        assert outcomes[restarted:].count("ok") >= 100, "answers again after the restart"
    finally:
        stop.set()
        await asyncio.gather(*callers)
        await client.aclose()
