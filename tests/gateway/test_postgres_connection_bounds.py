"""A PostgreSQL server that stops answering costs the gateway an error in bounded time, not a hang.

libpq's own defaults wait as long as TCP does (about 15 minutes for a query in flight), so
`make_engine` sets a connect timeout, keepalives and ``tcp_user_timeout`` (`POSTGRES_CONNECT_ARGS`),
and a URL that sets one of them keeps its own. Checked on the live socket (the kernel's options,
not only what was asked for) and against a listener that accepts and never says a word.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from gateway_common.db import POSTGRES_CONNECT_ARGS, make_engine


def socket_options(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar() == 1
            raw = conn.connection.dbapi_connection
            assert raw is not None
            sock = socket.socket(fileno=os.dup(raw.fileno()))
            try:
                return {
                    "keepalives": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    "keepalives_idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                    "keepalives_interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                    "keepalives_count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                    "tcp_user_timeout": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
                }
            finally:
                sock.close()
    finally:
        engine.dispose()


def test_connections_carry_keepalives_and_a_user_timeout(postgres_database: str) -> None:
    options = socket_options(postgres_database)
    assert options == {name: POSTGRES_CONNECT_ARGS[name] for name in options}


def test_a_url_that_sets_a_bound_keeps_its_own(postgres_database: str) -> None:
    options = socket_options(postgres_database + "?keepalives_idle=60&tcp_user_timeout=5000")
    assert options["keepalives_idle"] == 60 and options["tcp_user_timeout"] == 5000
    assert options["keepalives_interval"] == POSTGRES_CONNECT_ARGS["keepalives_interval"]


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port whose kernel accepts connections and whose server never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_a_server_that_never_answers_fails_the_connection_in_time(
    silent_listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default bound, shortened to libpq's shortest (2 s) to keep the test quick.
    monkeypatch.setitem(POSTGRES_CONNECT_ARGS, "connect_timeout", 2)
    engine = make_engine(f"postgresql://u@127.0.0.1:{silent_listener}/db")
    began = time.monotonic()
    try:
        with pytest.raises(OperationalError, match="timeout"), engine.connect():
            pass
    finally:
        engine.dispose()
    assert 1.5 < time.monotonic() - began < 8


def test_sqlite_engines_are_left_as_they_were(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/gateway.db")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("pragma busy_timeout")).scalar() == 30_000
    finally:
        engine.dispose()
