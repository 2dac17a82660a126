"""The UDP server: datagrams in, the endpoint machine and the Authenticator, datagrams out.

``datagram_received`` never awaits: it hands the bytes to ``radius.endpoint`` and, for a new
request, starts one task, up to ``max_in_flight`` at once; past that the datagram is dropped
and counted (the NAS retransmits). Each task claims the request in the shared store first, so
that a retransmission reaching another node of the cluster gets the same reply instead of a
second challenge (RFC 5080 §2.2.2 across nodes), then decides it and writes one
``request_finished`` audit line.

The only ``except Exception`` of the program is here, around one request: whatever goes wrong
with one datagram is logged with its traceback (no local variables) and that request is
dropped; the server goes on.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import structlog

from mfa_radius import logs
from mfa_radius.core.model import (
    Accept,
    AuthAttempt,
    ChallengeReply,
    Outcome,
)
from mfa_radius.core.policy import normalise_username
from mfa_radius.core.prompts import fit_octets
from mfa_radius.deadlines import Deadlines
from mfa_radius.errors import StoreUnavailable
from mfa_radius.ports import ChallengeStore, Clock
from mfa_radius.radius.endpoint import Endpoint, NewRequest, Respond
from mfa_radius.radius.packet import Attribute, AttrType, Code
from mfa_radius.service import Authenticator, Profile

log = structlog.get_logger("mfa_radius.server")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Settings of the UDP server.

    Attributes:
        node: this node's name for the audit line.
        max_in_flight: requests worked on at once.
        reply_ttl: seconds replies are kept for retransmissions (also in the shared store).
        store_timeout: deadline for the shared duplicate-cache operations.
        status_server: answer Status-Server (RFC 5997).
    """

    node: str
    max_in_flight: int = 4096
    reply_ttl: float = 30.0
    store_timeout: float = 1.0
    status_server: bool = True


class RadiusServer(asyncio.DatagramProtocol):
    """One listening socket's protocol.

    Args:
        endpoint: the RADIUS endpoint machine (clients, duplicate cache, signatures).
        authenticator: decides requests.
        profiles: each client's profile, by client name.
        store: the shared store (cluster-wide duplicate detection).
        clock: time source.
        settings: server settings.
        deadlines: the shared deadline timer (one per event loop).
    """

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        authenticator: Authenticator,
        profiles: Mapping[str, Profile],
        store: ChallengeStore,
        clock: Clock,
        settings: ServerSettings,
        deadlines: Deadlines | None = None,
    ) -> None:
        self._deadlines = deadlines or Deadlines()
        self._endpoint = endpoint
        self._authenticator = authenticator
        self._profiles = profiles
        self._store = store
        self._clock = clock
        self._settings = settings
        self._transport: asyncio.DatagramTransport | None = None
        self._server_ip = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids: Callable[[], int] = itertools.count(1).__next__
        self.counters: Counter[str] = Counter()
        """Counts by event: ``drop:<reason>``, ``outcome:<accept|reject|challenge>``."""
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
            if len(self._tasks) >= self._settings.max_in_flight:
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
        started = time.perf_counter()
        client = request.client.name
        profile = self._profiles[client]
        raw_user = request.packet.get_text(AttrType.USER_NAME) or ""
        user = normalise_username(raw_user, profile.policy)
        logs.start_request(
            req_id=f"{self._settings.node}-{self._ids()}",
            client=client,
            src=f"{src[0]}:{src[1]}",
            user=raw_user,
            node=self._settings.node,
            server_ip=self._server_ip,
        )
        try:
            if not await self._claim(request, src):
                return
            state = request.packet.get(AttrType.STATE)
            attempt = AuthAttempt(
                username=user,
                raw_username=raw_user,
                password=request.password,
                state=state,
                client=client,
                src_ip=src[0],
                request_attributes=request.packet.attributes,
            )
            outcome = await self._authenticator.authenticate(attempt, profile)
            code, attributes = _response(outcome)
            reply = self._endpoint.reply(request, code, attributes, self._clock.now())
            # Shared before it is sent: a retransmission that the NAS sends to another node as
            # soon as this reply arrives must find it there, not an "in progress" claim.
            await self._share_reply(request, reply)
            self._send(reply, src)
            self._finish(outcome, started)
        except Exception:  # the per-datagram guard: one bad request never stops the server
            self._endpoint.abandon(request)
            self.counters["drop:internal_error"] += 1
            log.exception("request_failed")

    async def _claim(self, request: NewRequest, src: tuple[str, int]) -> bool:
        """Claim the request cluster-wide; resend another node's reply when it has one.

        When the store is down the request is processed here: the store's failure then shows
        in the decision itself (fail mode), which is better than silence.
        """
        if not self._store.shared:
            return True  # one node: the endpoint's own duplicate cache is the whole story
        try:
            with self._deadlines.limit(self._settings.store_timeout):
                claim = await self._store.claim_request(
                    request.key.store_key(), self._settings.reply_ttl
                )
        except (StoreUnavailable, TimeoutError):
            return True
        if claim.owner:
            return True
        if claim.reply is not None:
            self._endpoint.remember_reply(request, claim.reply, self._clock.now())
            self._send(claim.reply, src)
            self.counters["respond:duplicate_cluster"] += 1
        else:
            self._endpoint.abandon(request)
            self._count_drop("duplicate_in_progress_cluster", src)
        return False

    async def _share_reply(self, request: NewRequest, reply: bytes) -> None:
        """Store the reply for the cluster before it is sent, within a short deadline.

        The reply waits for this, so a store that hangs may delay it by at most
        ``_SHARE_DEADLINE`` (the decision itself already ran under the response window).
        """
        if not self._store.shared:
            return
        try:
            with self._deadlines.limit(min(self._settings.store_timeout, _SHARE_DEADLINE)):
                await self._store.store_reply(
                    request.key.store_key(), reply, self._settings.reply_ttl
                )
        except (StoreUnavailable, TimeoutError):
            self.counters["reply_not_shared"] += 1

    def _finish(self, outcome: Outcome, started: float) -> None:
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        if isinstance(outcome, ChallengeReply):
            kind = "challenge"
            reason = outcome.retry_reason.value if outcome.retry_reason else "challenge_issued"
        else:
            kind = "accept" if isinstance(outcome, Accept) else "reject"
            reason = outcome.reason.value
        self.counters[_OUTCOME_KEYS[kind]] += 1
        log.info("request_finished", outcome=kind, reason=reason, duration_ms=duration_ms)

    def _count_drop(self, reason: str, src: tuple[str, int]) -> None:
        self.counters[f"drop:{reason}"] += 1
        log.debug("request_dropped", reason=reason, src=f"{src[0]}:{src[1]}")

    def _send(self, data: bytes, src: tuple[str, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, src)


_SHARE_DEADLINE = 0.25
"""Longest a reply waits to be shared with the cluster before it is sent anyway (seconds)."""

_OUTCOME_KEYS = {k: f"outcome:{k}" for k in ("accept", "reject", "challenge")}


def _response(outcome: Outcome) -> tuple[Code, list[Attribute]]:
    """Map a decision to the reply packet's code and attributes (RFC 2865 §4.2-§4.4)."""
    if isinstance(outcome, Accept):
        return Code.ACCESS_ACCEPT, list(outcome.attributes)
    if isinstance(outcome, ChallengeReply):
        return Code.ACCESS_CHALLENGE, [
            (AttrType.REPLY_MESSAGE, fit_octets(outcome.prompt)),
            (AttrType.STATE, outcome.state),
        ]
    attributes: list[Attribute] = []
    if outcome.message:
        attributes.append((AttrType.REPLY_MESSAGE, fit_octets(outcome.message)))
    return Code.ACCESS_REJECT, attributes
