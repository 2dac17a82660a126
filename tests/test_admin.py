"""The admin socket: `mfa-radius user unlock` reaching a running proxy's in-process store."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mfa_radius import admin
from mfa_radius.adapters.memory_store import MemoryChallengeStore
from mfa_radius.core import limits
from tests.support.clock import FakeClock


@pytest.fixture
async def served(
    tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Path, MemoryChallengeStore]]:
    store = MemoryChallengeStore(clock)
    path = tmp_path / "admin.sock"
    server = admin.AdminServer(path, store)
    await server.start()
    yield path, store
    await server.close()


async def test_unlock_clears_counters_in_the_running_store(
    served: tuple[Path, MemoryChallengeStore],
) -> None:
    """An unlock request removes the user's failure count and lockout from the live store."""
    path, store = served
    await store.count(limits.failures_key("pat"), 600)
    await store.count(limits.lock_key("pat"), 600)
    answer = await admin.request(path, {"op": "unlock", "user": "pat"})
    assert answer == {"ok": True}
    assert await store.peek_count(limits.failures_key("pat")) == 0
    assert await store.peek_count(limits.lock_key("pat")) == 0


async def test_socket_is_private_to_its_owner(served: tuple[Path, MemoryChallengeStore]) -> None:
    """The socket file is mode 0600: other local users cannot unlock anyone."""
    path, _ = served
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"not json\n", "not JSON"),
        (b'{"op":"drop"}\n', "unknown request"),
        (b'{"op":"unlock"}\n', "user missing"),
    ],
    ids=["garbage", "unknown-op", "no-user"],
)
async def test_bad_requests_get_an_error(
    served: tuple[Path, MemoryChallengeStore], line: bytes, error: str
) -> None:
    """Malformed requests are answered with an error and change nothing."""
    path, _ = served
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(line)
    await writer.drain()
    answer = await reader.readline()
    writer.close()
    assert error.encode() in answer


async def test_no_proxy_running_is_an_os_error(tmp_path: Path) -> None:
    """Without a proxy on the socket the client gets OSError (the CLI reports it)."""
    with pytest.raises(FileNotFoundError):
        await admin.request(tmp_path / "absent.sock", {"op": "unlock", "user": "pat"})
