"""The admin socket: commands from ``mfa-radius`` to the running proxy on the same host.

The in-process challenge store lives inside the proxy, so an admin command that must change it
(``mfa-radius user unlock``) has to reach the running process. It does so over a UNIX socket
that only the proxy's user can open (mode 0600): one JSON request per line, one JSON answer.
With Redis the CLI talks to Redis directly and this socket is optional.

Requests: ``{"op": "unlock", "user": "alice"}``. Answers: ``{"ok": true}`` or
``{"ok": false, "error": "..."}``. Nothing secret travels here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import orjson
import structlog

from mfa_radius.core import limits
from mfa_radius.errors import BackendError
from mfa_radius.ports import Marks

log = structlog.get_logger("mfa_radius.admin")

MAX_LINE = 4096
"""Longest request accepted (bytes)."""


class AdminServer:
    """Serves admin requests on a UNIX socket.

    Args:
        path: the socket file (replaced when it exists).
        store: the challenge store the commands act on.
    """

    def __init__(self, path: Path, store: Marks) -> None:
        self._path = path
        self._store = store
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Create the socket, readable and writable by this user only."""
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self._path), limit=MAX_LINE
            )
        finally:
            os.umask(old)

    async def close(self) -> None:
        """Stop accepting and remove the socket file."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5.0):
                line = await reader.readline()
                answer = await self._answer(line)
                writer.write(orjson.dumps(answer) + b"\n")
                await writer.drain()
        except (TimeoutError, ValueError, ConnectionError):
            pass  # a client that stalls, sends an over-long line or goes away gets nothing
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, object]:
        try:
            request = orjson.loads(line)
        except orjson.JSONDecodeError:
            return {"ok": False, "error": "not JSON"}
        if not isinstance(request, dict) or request.get("op") != "unlock":
            return {"ok": False, "error": "unknown request"}
        user = request.get("user")
        if not isinstance(user, str) or not user:
            return {"ok": False, "error": "user missing"}
        try:
            await self._store.delete(limits.failures_key(user), limits.lock_key(user))
        except BackendError as exc:
            return {"ok": False, "error": f"store unavailable: {exc.detail}"}
        log.info("user_unlocked", user=user)
        return {"ok": True}


async def request(
    path: Path, message: dict[str, object], *, wait: float = 5.0
) -> dict[str, object]:
    """Send one admin request to the proxy listening on ``path`` and return its answer.

    Raises:
        OSError: nobody listens on the socket (the proxy is not running), or no access.
        TimeoutError: the proxy did not answer in time.
        TypeError: the answer is not a JSON object.
        ValueError: the answer is not JSON.
    """
    async with asyncio.timeout(wait):
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            writer.write(orjson.dumps(message) + b"\n")
            await writer.drain()
            answer = orjson.loads(await reader.readline())
        finally:
            writer.close()
    if not isinstance(answer, dict):
        raise TypeError("answer is not a JSON object")
    return answer
