"""The UDP listener: datagrams in, the endpoint machine and the request handler, datagrams out.

``datagram_received`` never awaits: it hands the bytes to ``radius.endpoint`` and, for a new
request, starts one task, up to ``max_in_flight`` at once; past that the datagram is dropped
and counted (the NAS retransmits). Retransmissions the endpoint recognises are answered from
its cache without a task. The decision and the audit line are the request handler's
(``transport/handler.py``), shared with every other transport.

Drops an admin must see. RFC 2865 §3 makes the proxy silent towards a NAS it cannot trust, so
a wrong shared secret or a missing ``[[client]]`` would otherwise look like an unreachable
server. Each drop is a DEBUG ``request_dropped`` line; the drops that mean a configuration
mismatch (:data:`WARNED_REASONS`: an unknown source address, a bad Message-Authenticator, a
Message-Authenticator the policy requires but the NAS does not send) also give a WARNING
``requests_dropped`` line, at most one per (client, reason) - per (source address, reason) for
an unknown client - per ``warn_interval`` seconds of the injected clock, carrying ``count``,
the drops since the previous line of that key, and a ``hint``. The lines hold names, addresses
and counts only: never a secret or packet bytes.

Stopping (:meth:`UdpListener.stop`): from then on every datagram is dropped and counted as
``drop:shutting_down`` (uvloop's UDP transport cannot ``pause_reading``, and reading and
counting shows what arrived), while requests already in flight finish and are answered on the
still-open socket; :meth:`UdpListener.drain` waits for them, and :meth:`UdpListener.close`
closes the socket afterwards.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

import structlog

from mfa_radius.ports import Clock
from mfa_radius.radius.clients import ClientTable
from mfa_radius.radius.endpoint import Endpoint, NewRequest, Respond
from mfa_radius.transport.handler import RequestHandler

log = structlog.get_logger("mfa_radius.server")

WARNED_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "unknown_client": "no [[client]] ipaddr covers this source address",
        # FreeRADIUS logs "shared secret is incorrect" for the same drop.
        "bad_message_authenticator": "check the shared secret",
        "missing_message_authenticator": (
            "the client sends no Message-Authenticator but require_message_authenticator "
            "asks for it: enable it on the NAS"
        ),
        "status_server_without_message_authenticator": (
            "Status-Server needs a Message-Authenticator (RFC 5997 §3)"
        ),
        "eap_without_message_authenticator": "EAP needs a Message-Authenticator (RFC 3579 §3.2)",
        "proxy_state_without_message_authenticator": (
            "Proxy-State without Message-Authenticator is refused (limit_proxy_state): "
            "enable Message-Authenticator on the client"
        ),
    }
)
"""Drop reason -> hint, for the reasons that warn (see the module docstring)."""

WARN_INTERVAL = 10.0
"""Default seconds between two ``requests_dropped`` lines of one (client, reason)."""

_WARNED_LIMIT = 10_000
"""Most (client or address, reason) keys kept for the warning rate limit."""


@dataclass(slots=True)
class _Warned:
    """Rate-limit state of one (client or source address, reason)."""

    next_line: float
    pending: int = 0


class UdpListener(asyncio.DatagramProtocol):
    """One listening socket's protocol.

    Args:
        endpoint: the RADIUS endpoint machine (clients, duplicate cache, signatures).
        handler: decides new requests.
        clients: the NAS table the endpoint uses (names the client of a warned drop).
        clock: time source.
        max_in_flight: requests worked on at once.
        warn_interval: seconds between two warnings of one (client, reason).
    """

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        handler: RequestHandler,
        clients: ClientTable,
        clock: Clock,
        max_in_flight: int = 4096,
        warn_interval: float = WARN_INTERVAL,
    ) -> None:
        self._endpoint = endpoint
        self._handler = handler
        self._clients = clients
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._warn_interval = warn_interval
        self._transport: asyncio.DatagramTransport | None = None
        self._server_ip = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._closed = asyncio.Event()
        self._warned: dict[tuple[str, str], _Warned] = {}
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

    def connection_lost(self, exc: Exception | None) -> None:
        """The socket is closed (after :meth:`close`, or on an error)."""
        self._closed.set()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        """Classify one datagram without awaiting; start a task for a new request."""
        src = (str(addr[0]), int(addr[1]))
        if self._stopping:
            self._count_drop("shutting_down", src)
            return
        now = self._clock.now()
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
            if result.reason in WARNED_REASONS:
                self._warn(result.reason, src, now)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors on UDP (port unreachable from a NAS that went away): count and go on."""
        self.counters["socket_error"] += 1
        log.debug("socket_error", error=type(exc).__name__)

    # lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Take no new datagram: each one from now on is dropped as ``shutting_down``.

        Requests already in flight go on and are answered; the socket stays open until
        :meth:`close`.
        """
        self._stopping = True

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for in-flight requests, then cancel the rest.

        Args:
            grace: seconds the requests in flight may take to finish.
        """
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    async def close(self, grace: float = 1.0) -> None:
        """Close the socket and wait up to ``grace`` seconds until queued replies are out.

        Args:
            grace: seconds to wait for the transport to report the socket closed.
        """
        self._report_pending()
        if self._transport is None:
            return
        self._transport.close()
        try:
            async with asyncio.timeout(grace):
                await self._closed.wait()
        except TimeoutError:
            log.warning("socket_close_timeout", server_ip=self._server_ip)

    @property
    def transport(self) -> asyncio.DatagramTransport | None:
        """The socket's transport once bound (its ``socket`` extra carries the options)."""
        return self._transport

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

    def _warn(self, reason: str, src: tuple[str, int], now: float) -> None:
        """One WARNING line per (client or source address, reason) per interval, with a count."""
        client = self._clients.lookup(src[0]) if reason != "unknown_client" else None
        who = client.name if client is not None else src[0]
        key = (who, reason)
        warned = self._warned.get(key)
        if warned is not None and now < warned.next_line:
            warned.pending += 1
            return
        count = 1 if warned is None else warned.pending + 1
        if warned is None and len(self._warned) >= _WARNED_LIMIT:
            self._warned.clear()  # a flood of spoofed sources must not grow the table forever
        self._warned[key] = _Warned(next_line=now + self._warn_interval)
        self._log_warning(reason, who, known=client is not None, count=count, src=src[0])

    def _report_pending(self) -> None:
        """Write the drops held back by the rate limit (at stop, so no count is lost)."""
        for (who, reason), warned in self._warned.items():
            if warned.pending:
                known = reason != "unknown_client"
                self._log_warning(reason, who, known=known, count=warned.pending, src=None)
                warned.pending = 0

    def _log_warning(
        self, reason: str, who: str, *, known: bool, count: int, src: str | None
    ) -> None:
        where = {"client": who} if known else {"src": who}
        if known and src is not None:
            where["src"] = src
        log.warning(
            "requests_dropped",
            reason=reason,
            count=count,
            interval=self._warn_interval,
            hint=WARNED_REASONS[reason],
            **where,
        )

    def _send(self, data: bytes, src: tuple[str, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, src)
