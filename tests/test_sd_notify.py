"""The sd_notify sender against a real AF_UNIX datagram socket, and ``serve`` under it.

The test plays the service manager: it binds the socket named in ``$NOTIFY_SOCKET`` and reads
what arrives. The end-to-end test runs ``mfa-radius serve`` as a child process with
``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` in its environment, as systemd starts a
``Type=notify`` unit with ``WatchdogSec=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from mfa_radius import sd_notify
from tests.support import proxy
from tests.support.ports import free_udp_port
from tests.support.proxy import ProxyProcess


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket in tmp_path, as systemd's notify socket: (path, socket)."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5.0)
    try:
        yield str(path), sock
    finally:
        sock.close()


def lines(data: bytes) -> list[str]:
    """The assignments of one notify datagram."""
    return data.decode().split("\n")


class TestSocketAddress:
    @pytest.mark.parametrize(
        ("name", "address"),
        [
            ("/run/systemd/notify", "/run/systemd/notify"),
            ("@systemd/notify", b"\0systemd/notify"),
            ("@", None),
            ("run/notify", None),
            ("vsock:2:1234", None),
        ],
        ids=["path", "abstract", "bare-at", "relative", "vsock"],
    )
    def test_maps_the_variable_to_a_sendto_address(
        self, name: str, address: str | bytes | None
    ) -> None:
        """A path is used as is, ``@`` becomes a leading NUL, anything else is refused."""
        assert sd_notify.socket_address(name) == address


class TestNotifier:
    def test_sends_one_datagram_to_a_path_socket(self, manager: tuple[str, socket.socket]) -> None:
        """READY=1 and the status arrive together, as one datagram of lines."""
        path, sock = manager
        notifier = sd_notify.Notifier.from_environment({"NOTIFY_SOCKET": path})
        try:
            assert notifier.ready("Listening on 127.0.0.1:1812")
            assert lines(sock.recv(4096)) == ["READY=1", "STATUS=Listening on 127.0.0.1:1812"]
        finally:
            notifier.close()
        assert (notifier.sent, notifier.failures) == (1, 0)

    def test_sends_to_an_abstract_socket_when_the_name_starts_with_at(self) -> None:
        """``@name`` addresses the abstract namespace (no file), as systemd may hand out."""
        name = f"mfa-radius-test-{secrets.token_hex(8)}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(b"\0" + name.encode())
            sock.settimeout(5.0)
            notifier = sd_notify.Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
            try:
                assert notifier.watchdog()
                assert lines(sock.recv(4096)) == ["WATCHDOG=1"]
            finally:
                notifier.close()

    def test_stopping_says_stopping(self, manager: tuple[str, socket.socket]) -> None:
        """STOPPING=1 comes with a status line."""
        path, sock = manager
        notifier = sd_notify.Notifier(path)
        try:
            assert notifier.stopping("Stopping: 2 requests in flight")
            assert lines(sock.recv(4096)) == ["STOPPING=1", "STATUS=Stopping: 2 requests in flight"]
        finally:
            notifier.close()

    @pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}], ids=["unset", "empty"])
    def test_does_nothing_when_the_variable_is_unset(self, environ: dict[str, str]) -> None:
        """Outside systemd nothing is sent, nothing fails and nothing is logged."""
        with structlog.testing.capture_logs() as logs:
            notifier = sd_notify.Notifier.from_environment(environ)
            assert not notifier.enabled
            assert not notifier.ready("Listening")
            assert not notifier.watchdog()
            notifier.close()
        assert (notifier.sent, notifier.failures) == (0, 0)
        assert logs == []

    def test_a_socket_that_is_gone_does_not_raise_and_is_logged_once(self, tmp_path: Path) -> None:
        """The socket vanished: each send fails quietly and is counted; one warning."""
        path = tmp_path / "notify"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
        path.unlink()
        with structlog.testing.capture_logs() as logs:
            notifier = sd_notify.Notifier(str(path))
            results = [notifier.ready("Listening"), notifier.watchdog(), notifier.stopping()]
            notifier.close()
        assert results == [False, False, False]
        assert notifier.failures == 3
        assert [entry["event"] for entry in logs] == ["notify_failed"]
        assert logs[0]["socket"] == str(path)
        assert "FileNotFoundError" in logs[0]["error"]

    def test_a_socket_nobody_reads_does_not_block(self, manager: tuple[str, socket.socket]) -> None:
        """A full receive queue makes sends fail (counted) instead of blocking the loop."""
        path, _ = manager
        notifier = sd_notify.Notifier(path)
        try:
            for _ in range(100_000):
                if not notifier.watchdog():
                    break
        finally:
            notifier.close()
        assert notifier.failures == 1
        assert notifier.sent > 0

    def test_an_unsupported_address_is_a_failure_not_an_error(self) -> None:
        """A relative name is refused once at construction; sends are no-ops."""
        with structlog.testing.capture_logs() as logs:
            notifier = sd_notify.Notifier("relative/notify")
            assert not notifier.enabled
            assert not notifier.ready("Listening")
        assert notifier.failures == 1
        assert [entry["event"] for entry in logs] == ["notify_failed"]


class TestWatchdogInterval:
    @pytest.mark.parametrize(
        ("environ", "interval"),
        [
            ({"WATCHDOG_USEC": "30000000"}, 15.0),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
            ({}, None),
            ({"WATCHDOG_USEC": "0"}, None),
            ({"WATCHDOG_USEC": "-5"}, None),
            ({"WATCHDOG_USEC": "30s"}, None),
        ],
        ids=["set", "our-pid", "other-pid", "bad-pid", "unset", "zero", "negative", "not-usec"],
    )
    def test_is_half_the_timeout_for_this_process_only(
        self, environ: dict[str, str], interval: float | None
    ) -> None:
        """Ping every WATCHDOG_USEC/2, only when WATCHDOG_PID (if set) is this process."""
        assert sd_notify.watchdog_interval(environ, pid=4242) == interval


class Manager:
    """Reads every datagram arriving at a notify socket into :attr:`messages`, as they come.

    Reading at once matters: Linux queues only ``net.unix.max_dgram_qlen`` datagrams (often
    10) on a socket, and further sends fail.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.messages: list[list[str]] = []

    async def read(self) -> None:
        """Receive datagrams until cancelled."""
        loop = asyncio.get_running_loop()
        self._sock.setblocking(False)
        while True:
            self.messages.append(lines(await loop.sock_recv(self._sock, 4096)))

    def index(self, line: str, start: int = 0) -> int | None:
        """The position of the first message from ``start`` on holding ``line``."""
        for position in range(start, len(self.messages)):
            if line in self.messages[position]:
                return position
        return None


@pytest.fixture
async def notified(manager: tuple[str, socket.socket]) -> AsyncIterator[tuple[str, Manager]]:
    """The notify socket's path and a task reading it for the duration of the test."""
    path, sock = manager
    reader = Manager(sock)
    task = asyncio.get_running_loop().create_task(reader.read())
    try:
        yield path, reader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_serve_reports_ready_watchdog_and_stopping_to_systemd(
    tmp_path: Path, notified: tuple[str, Manager]
) -> None:
    """``mfa-radius serve`` under Type=notify: READY=1, watchdog pings, STOPPING=1, exit 0."""
    path, manager = notified
    cfg = proxy.write_config(tmp_path, port=free_udp_port())
    node = ProxyProcess(
        cfg,
        tmp_path / "proxy.log",
        env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"},
    )
    try:
        await asyncio.to_thread(node.start)
        await proxy.until(lambda: manager.index("READY=1") is not None, "READY=1 arrived")
        ready = manager.index("READY=1")
        assert ready is not None
        assert f"STATUS=Listening on 127.0.0.1:{cfg.port}" in manager.messages[ready]
        await proxy.until(
            lambda: manager.index("WATCHDOG=1", ready + 1) is not None,
            "a WATCHDOG=1 after READY=1",
        )
        assert manager.index("STOPPING=1") is None
        node.send_signal(signal.SIGTERM)
        await proxy.until(lambda: manager.index("STOPPING=1") is not None, "STOPPING=1 arrived")
        exit_code = await asyncio.to_thread(node.wait)
    finally:
        await asyncio.to_thread(node.stop)
    assert exit_code == 0
    sent = [line for message in manager.messages for line in message]
    assert "RELOADING=1" not in sent
    assert sent.count("READY=1") == 1
    stopping = manager.index("STOPPING=1")
    assert stopping is not None
    assert stopping > ready
    assert node.events("notify_failed") == []
    assert node.events("server_stopped")
