"""The UDP listener: datagrams in, the endpoint machine and the request handler, datagrams out.

``datagram_received`` never awaits: it hands the bytes to ``radius.endpoint`` and, for a new
request, starts one task, up to ``max_in_flight`` at once; past that the datagram is dropped
and counted (the NAS retransmits). Retransmissions the endpoint recognises are answered from
its cache without a task. The decision and the audit line are the request handler's
(``transport/handler.py``), shared with every other transport.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import cast

import structlog

from mfa_radius.ports import Clock
from mfa_radius.radius.endpoint import Endpoint, NewRequest, Respond
from mfa_radius.transport.handler import RequestHandler

log = structlog.get_logger("mfa_radius.server")


class UdpListener(asyncio.DatagramProtocol):
    """One listening socket's protocol.

    Args:
        endpoint: the RADIUS endpoint machine (clients, duplicate cache, signatures).
        handler: decides new requests.
        clock: time source.
        max_in_flight: requests worked on at once.
    """

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        handler: RequestHandler,
        clock: Clock,
        max_in_flight: int = 4096,
    ) -> None:
        self._endpoint = endpoint
        self._handler = handler
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._transport: asyncio.DatagramTransport | None = None
        self._server_ip = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self.counters: Counter[str] = Counter()
        """Counts by event: ``drop:<reason>``, ``respond:<reason>``, ``outcome:<kind>``."""
        self._next_expiry = 0.0

    # asyncio.DatagramProtocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the socket to answer on."""
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport; it has sendto.
        self._transport = cast(asyncio.DatagramTransport, transport)
        sockname = self._transport.get_extra_info("sockname")
        self._server_ip = str(sockname[0]) if sockname else ""

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        """Classify one datagram without awaiting; start a task for a new request."""
        now = self._clock.now()
        src = (str(addr[0]), int(addr[1]))
        if now >= self._next_expiry:
            self._endpoint.expire(now)
            self._next_expiry = now + 1.0
        result = self._endpoint.receive(data, src, now)
        if isinstance(result, NewRequest):
            if len(self._tasks) >= self._max_in_flight:
                self._endpoint.abandon(result)
                self._count_drop("overload", src)
                return
            task = asyncio.get_running_loop().create_task(self._handle(result, src))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif isinstance(result, Respond):
            self.counters[f"respond:{result.reason}"] += 1
            self._send(result.data, src)
        else:
            self._count_drop(result.reason, src)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors on UDP (port unreachable from a NAS that went away): count and go on."""
        self.counters["socket_error"] += 1
        log.debug("socket_error", error=type(exc).__name__)

    # lifecycle ----------------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for in-flight requests, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    @property
    def in_flight(self) -> int:
        """Requests being worked on now."""
        return len(self._tasks)

    # one request --------------------------------------------------------------------------

    async def _handle(self, request: NewRequest, src: tuple[str, int]) -> None:
        handled = await self._handler.handle(request, src, self._server_ip)
        for event in handled.events:
            self.counters[event] += 1
        if handled.reply is not None:
            self._send(handled.reply, src)

    def _count_drop(self, reason: str, src: tuple[str, int]) -> None:
        self.counters[f"drop:{reason}"] += 1
        log.debug("request_dropped", reason=reason, src=f"{src[0]}:{src[1]}")

    def _send(self, data: bytes, src: tuple[str, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, src)
