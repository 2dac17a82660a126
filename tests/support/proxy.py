"""Run real mfa-radius proxies for tests: in-process (same event loop) or as processes.

Both kinds load a real configuration file written by :func:`write_config`, so the tests go
through the same composition root (``app.running``) an admin's ``mfa-radius serve`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfa_radius import app, config
from mfa_radius.adapters.aesgcm_keyring import Keyring

SECRET = "test-shared-secret-0123456789"
"""The shared secret of the test NAS."""

KEY_LINE = Keyring.generate_line("test1")
"""The secret-encryption key of every test proxy."""

TOTP_SECRET = b"0123456789abcdefghij"
"""The TOTP secret enrolled for test users (160 bits)."""


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """A written configuration.

    Attributes:
        path: the TOML file.
        port: the UDP port it listens on (0: chosen at bind time).
    """

    path: Path
    port: int


def write_config(
    directory: Path,
    *,
    port: int = 0,
    store: str = "memory",
    redis_url: str = "",
    node: str = "test",
    client: str = "",
    profile: str = "",
    extra: str = "",
    database: str = "enrolment.db",
) -> ProxyConfig:
    """Write a proxy configuration for loopback tests.

    Args:
        directory: where the config, key file and database go.
        port: UDP port on 127.0.0.1 (0: any free port, in-process tests read it back).
        store: ``memory`` or ``redis``.
        redis_url: the Redis URL when ``store`` is redis.
        node: the node name in audit lines.
        client: extra keys for the ``[[client]]`` block.
        profile: extra keys for the ``[profile.default]`` block.
        extra: extra TOML appended at the end (sections).
        database: SQLite file name, relative to ``directory``.

    Returns:
        The written file and its port.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "enrolment.key").write_text(KEY_LINE + "\n", encoding="utf-8")
    (directory / "enrolment.key").chmod(0o600)  # the proxy refuses a key others can read
    redis = (
        f'[redis]\nurl = "{redis_url}"\nsocket_timeout = 0.3\nconnect_timeout = 0.3\n'
        if redis_url
        else ""
    )
    text = f"""
[server]
listen = ["127.0.0.1:{port}"]
node_name = "{node}"

[[client]]
name = "nas"
ipaddr = ["127.0.0.0/8"]
secret = "{SECRET}"
{client}

[profile.default]
{"" if "response_window" in profile else "response_window = 3.0"}
{profile}

[store]
backend = "{store}"
timeout = 0.5

{redis}
[enrolment]
database = "sqlite:///{database}"
key_file = "enrolment.key"

[log]
level = "debug"
{extra}
"""
    path = directory / "radius.conf"
    path.write_text(text, encoding="utf-8")
    db = directory / database
    if not db.exists():  # what `mfa-radius db init` would do: a private file, migrated on open
        db.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return ProxyConfig(path=path, port=port)


@contextlib.asynccontextmanager
async def in_process(cfg: ProxyConfig) -> AsyncIterator[app.Running]:
    """Run the proxy in this event loop; yields the running parts (addresses, enrolments)."""
    loaded = config.load(cfg.path)
    async with app.running(loaded) as proxy:
        yield proxy


async def enrol(proxy: app.Running, username: str = "alice", *, password: str = "") -> None:
    """Create a user with the test TOTP secret (and a local password when given)."""
    from mfa_radius.adapters.argon2_primary import hash_password

    await proxy.enrolments.add_user(
        username, display_name=username.title(), email=f"{username}@example.org"
    )
    await proxy.enrolments.add_totp(username, TOTP_SECRET)
    if password:
        await proxy.enrolments.set_password_hash(username, hash_password(password))


async def exchange(sock: socket.socket, data: bytes, port: int, *, wait: float = 9.0) -> bytes:
    """Send ``data`` from one fixed source port to 127.0.0.1:``port`` and wait for the reply.

    A NAS failing over sends the same datagram from the same socket to another server; tests
    of cluster-wide duplicate detection do the same with one non-blocking socket.
    """
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, data, ("127.0.0.1", port))
    async with asyncio.timeout(wait):
        reply, _ = await loop.sock_recvfrom(sock, 4096)
    return reply


async def until(done: Callable[[], bool], what: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Poll ``done`` every 20 ms until it holds; fail the test naming ``what`` past ``timeout``.

    A bounded poll for something another process or the event loop does (a datagram handled,
    a request reaching a fake): the deadline is generous, the test goes on as soon as it holds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


class ProxyProcess:
    """``mfa-radius serve`` in a child process, stopped with SIGTERM.

    Args:
        cfg: a configuration with a fixed port.
        log_path: where the child's standard output and error go.
        env: variables added to (or replacing those of) this process's environment.
    """

    def __init__(
        self, cfg: ProxyConfig, log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.cfg = cfg
        self.log_path = log_path
        self.env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until it has bound its port."""
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "mfa_radius", "serve", "-c", str(self.cfg.path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"proxy exited: {self.log_path.read_text()[-2000:]}")
            if "server_started" in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"proxy did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> int:
        """Send SIGTERM and wait; return the exit code."""
        if self._proc is None:
            return 0
        self._proc.terminate()
        try:
            return self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._proc.wait(timeout=5)

    def send_signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig`` without waiting (see :meth:`wait`)."""
        if self._proc is None:
            raise RuntimeError("the proxy was not started")
        self._proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit and return its exit code (kill it past ``timeout``)."""
        if self._proc is None:
            return 0
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._proc.wait(timeout=5)

    def output(self) -> str:
        """What the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written so far, in order: of event ``name``, or all of them."""
        found = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if isinstance(entry, dict) and name in (None, entry.get("event")):
                    found.append(entry)
        return found

    async def wait_for_output(self, text: str, timeout: float = 3.0) -> bool:  # noqa: ASYNC109
        """Wait until ``text`` appears in the output (the audit line follows the reply)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in await asyncio.to_thread(self.output):
                return True
            await asyncio.sleep(0.02)
        return False
