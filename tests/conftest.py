"""Fixtures shared by the whole suite: fake time and real, throw-away Redis servers.

Add a fixture here only when more than one test package uses it; keep each one small, typed
and documented by a one-line docstring.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from tests.support.clock import FakeClock
from tests.support.redis_server import RedisServer


@pytest.fixture
def clock() -> FakeClock:
    """A clock at a fixed instant that moves only when the test advances it."""
    return FakeClock()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server on loopback shared by the session; tests must not stop it."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the shared server, whose database is flushed before the test."""
    with Redis.from_url(redis_server.url, socket_timeout=2.0) as client:
        client.flushdb()
    return redis_server.url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, free to stop, pause or restart; stopped after."""
    with RedisServer(tmp_path) as server:
        yield server
