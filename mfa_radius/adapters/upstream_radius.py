"""UpstreamRadiusAuthenticator: the primary password check done by upstream RADIUS home servers.

The proxy asks NPS or FreeRADIUS whether the password is right, with the vocabulary of a
FreeRADIUS ``home_server`` and a ``fail-over`` ``home_server_pool``:

* Each request goes to the first usable home server; a server that does not answer within its
  ``response_window`` is marked *zombie* and the same request goes on to the next one (built
  afresh: new Identifier, new Request Authenticator, User-Password hidden with that server's
  secret, RFC 2865 §5.2).
* A zombie is probed with Status-Server (RFC 5997 §3) every ``probe_interval`` seconds; an
  answer makes it *alive*. A zombie that stays silent for ``zombie_period`` is *dead*. A dead
  server is *alive* again after ``revive_interval``, or as soon as a probe answers.
* Order of trial: alive servers in configured order, then zombies; dead ones only when every
  server is dead (better than nothing: the service's deadline bounds the wait).

Split of responsibilities: :class:`HomeServerPool` is the pure state machine (no I/O, time
passed in as ``now``) and is unit-tested with fake time; :class:`UpstreamRadiusAuthenticator`
does the I/O with one :class:`~mfa_radius.adapters.radius_client.RadiusConnection` per home
server (more when 256 requests are in flight to one server).

Security rules kept here: Message-Authenticator is sent first in every request (RFC 3579 §3.2,
the BlastRADIUS mitigation) and required in replies unless the home server is configured not
to send it; replies are checked against the Response Authenticator (RFC 2865 §3); a reply that
fails any check is ignored as if lost and logged as ``upstream_reply_dropped``. Neither
passwords nor secrets reach a log line or an exception message.

This module must not decide what a failure means for the login: it raises
:class:`~mfa_radius.errors.PrimaryUnavailable` and ``core.policy`` applies the fail mode.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import structlog

from mfa_radius.adapters.radius_client import RadiusConnection
from mfa_radius.core.model import (
    AuthAttempt,
    PrimaryAccept,
    PrimaryChallenge,
    PrimaryReject,
    PrimaryResult,
    RejectReason,
)
from mfa_radius.errors import PrimaryUnavailable
from mfa_radius.ports import Clock
from mfa_radius.radius.packet import Attribute, AttrType, Code, RadiusPacket

log = structlog.get_logger(__name__)

DEFAULT_FORWARD: tuple[int, ...] = (
    AttrType.NAS_IP_ADDRESS,  # RFC 2865 §5.4: which NAS; NPS network policies match on it
    AttrType.NAS_PORT,  # RFC 2865 §5.5: the NAS's port (session accounting, policies)
    AttrType.SERVICE_TYPE,  # RFC 2865 §5.6: a hint of the service asked for (Framed, Login)
    AttrType.CALLED_STATION_ID,  # RFC 2865 §5.30: the VPN gateway address / tunnel group
    AttrType.CALLING_STATION_ID,  # RFC 2865 §5.31: the user's address, for the upstream's logs
    AttrType.NAS_IDENTIFIER,  # RFC 2865 §5.32: the NAS's name; policies match on it
    AttrType.NAS_PORT_TYPE,  # RFC 2865 §5.41: Virtual for VPNs; policies match on it
    AttrType.NAS_IPV6_ADDRESS,  # RFC 3162 §2.1: NAS-IP-Address for an IPv6 NAS
)
"""Request attributes copied from the NAS's Access-Request into the upstream one.

These describe the NAS and the session, which the home server's policy may test (NPS
"conditions", FreeRADIUS huntgroups). User-Name and User-Password are always sent; State is
sent only as the upstream's own State. Never forwarded: Proxy-State (RFC 2865 §5.33: it
belongs to the NAS-proxy hop, and we originate a new request rather than proxy one),
Message-Authenticator (signed per hop), EAP-Message (this proxy does not relay EAP).
"""

_NEVER_FORWARDED = frozenset(
    {
        AttrType.USER_NAME,
        AttrType.USER_PASSWORD,
        AttrType.CHAP_PASSWORD,
        AttrType.STATE,
        AttrType.PROXY_STATE,
        AttrType.EAP_MESSAGE,
        AttrType.MESSAGE_AUTHENTICATOR,
    }
)

_NEVER_KEPT = frozenset(
    {
        AttrType.USER_PASSWORD,
        AttrType.STATE,
        AttrType.PROXY_STATE,
        AttrType.EAP_MESSAGE,
        AttrType.MESSAGE_AUTHENTICATOR,
    }
)
"""Reply attributes that belong to the upstream hop and are never passed to the NAS.

State (RFC 2865 §5.24) and Proxy-State (§5.33) are the upstream exchange's own; the
Message-Authenticator (RFC 3579 §3.2) is recomputed for the NAS; EAP-Message is not relayed.
"""

_REPLY_CODES = frozenset({Code.ACCESS_ACCEPT, Code.ACCESS_REJECT, Code.ACCESS_CHALLENGE})
_MAX_CONNECTIONS = 16
"""Sockets per home server: 16 x 256 requests in flight before a server counts as busy."""


@dataclass(frozen=True, slots=True)
class HomeServer:
    """One upstream RADIUS server, as a FreeRADIUS ``home_server`` section describes it.

    Attributes:
        name: the name in logs, in :meth:`UpstreamRadiusAuthenticator.status` and on the
            audit line's ``upstream`` key.
        host: address or name (``ipaddr``).
        port: authentication port (RFC 2865 §3: 1812).
        secret: the shared secret (never logged, left out of ``repr`` and comparisons).
        response_window: seconds to wait for a reply before failing over and marking the
            server zombie.
        zombie_period: seconds a zombie may stay silent before it is declared dead.
        revive_interval: seconds after which a dead server is tried again anyway.
        status_check: probe the server with Status-Server (RFC 5997) while it is zombie or
            dead; turn off for a server that does not answer Status-Server.
        require_message_authenticator: ignore replies without Message-Authenticator
            (RFC 3579 §3.2, BlastRADIUS). FreeRADIUS 3.2.1 (tested) signs no non-EAP reply,
            Status-Server answers included, unless its policy adds
            ``&reply:Message-Authenticator := 0x00``; such a server needs this off, or that
            policy on.
    """

    name: str
    host: str
    port: int = 1812
    secret: bytes = field(repr=False, compare=False, kw_only=True)
    response_window: float = 5.0
    zombie_period: float = 40.0
    revive_interval: float = 60.0
    status_check: bool = True
    require_message_authenticator: bool = True

    def __post_init__(self) -> None:
        """Refuse values no configuration should produce.

        Raises:
            ValueError: an empty name or secret, a port outside 1-65535, or a period that is
                not positive.
        """
        if not self.name:
            raise ValueError("a home server needs a name")
        if not self.secret:
            raise ValueError(f"home server {self.name}: the secret is empty")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"home server {self.name}: port {self.port} is outside 1-65535")
        for key in ("response_window", "zombie_period", "revive_interval"):
            if not getattr(self, key) > 0:
                raise ValueError(f"home server {self.name}: {key} must be positive")


class HomeServerStatus(StrEnum):
    """Liveness of a home server (FreeRADIUS' words)."""

    ALIVE = "alive"  #: answering; tried first, in configured order
    ZOMBIE = "zombie"  #: missed a response window; tried after the alive ones, probed
    DEAD = "dead"  #: silent for zombie_period; tried only when every server is dead


@dataclass(slots=True)
class _Health:
    status: HomeServerStatus = HomeServerStatus.ALIVE
    since: float = 0.0
    """When the server entered its current status."""
    last_answer: float | None = None


class HomeServerPool:
    """The fail-over state machine of a set of home servers; pure, with time passed in.

    Every method takes ``now`` (seconds, from :class:`~mfa_radius.ports.Clock`) and first
    applies the transitions that time alone causes (zombie -> dead after ``zombie_period``,
    dead -> alive after ``revive_interval``). Methods that change a status return the changes
    as ``(name, new status)`` pairs, so that the caller can log them.

    Args:
        servers: the home servers in fail-over order; all start alive.
        now: the current time.

    Raises:
        ValueError: no servers, or two with the same name.
    """

    def __init__(self, servers: Sequence[HomeServer], now: float) -> None:
        if not servers:
            raise ValueError("at least one home server is needed")
        names = [s.name for s in servers]
        if len(set(names)) != len(names):
            raise ValueError("home server names must be unique")
        self._servers = tuple(servers)
        self._health = {s.name: _Health(since=now) for s in servers}

    @property
    def servers(self) -> tuple[HomeServer, ...]:
        """The home servers in configured order."""
        return self._servers

    def tick(self, now: float) -> list[tuple[str, HomeServerStatus]]:
        """Apply the transitions due by ``now``.

        Returns:
            The servers whose status changed, with their new status.
        """
        changes: list[tuple[str, HomeServerStatus]] = []
        for server in self._servers:
            health = self._health[server.name]
            if (
                health.status is HomeServerStatus.ZOMBIE
                and now - health.since >= server.zombie_period
            ):
                self._set(server.name, HomeServerStatus.DEAD, now, changes)
            elif (
                health.status is HomeServerStatus.DEAD
                and now - health.since >= server.revive_interval
            ):
                self._set(server.name, HomeServerStatus.ALIVE, now, changes)
        return changes

    def status(self, now: float) -> list[tuple[str, HomeServerStatus]]:
        """Return every server's status in configured order (after :meth:`tick`)."""
        self.tick(now)
        return [(s.name, self._health[s.name].status) for s in self._servers]

    def order(self, now: float) -> list[HomeServer]:
        """Return the servers to try for a new request, first choice first.

        Alive servers in configured order, then zombies in configured order; dead servers
        only when every server is dead, then all of them in configured order.
        """
        self.tick(now)
        by_status = {
            status: [s for s in self._servers if self._health[s.name].status is status]
            for status in HomeServerStatus
        }
        usable = by_status[HomeServerStatus.ALIVE] + by_status[HomeServerStatus.ZOMBIE]
        return usable or list(self._servers)

    def to_probe(self, now: float) -> list[HomeServer]:
        """Return the zombie and dead servers that take Status-Server probes."""
        self.tick(now)
        return [
            s
            for s in self._servers
            if s.status_check and self._health[s.name].status is not HomeServerStatus.ALIVE
        ]

    def answered(self, name: str, now: float) -> list[tuple[str, HomeServerStatus]]:
        """Record a verified reply from ``name``: it is alive.

        Returns:
            The status changes, this server's included when it was not alive.
        """
        changes = self.tick(now)
        self._health[name].last_answer = now
        self._set(name, HomeServerStatus.ALIVE, now, changes)
        return changes

    def timed_out(self, name: str, sent: float, now: float) -> list[tuple[str, HomeServerStatus]]:
        """Record that a request sent to ``name`` at ``sent`` got no reply in its window.

        An alive server becomes zombie, unless it answered another request after this one
        was sent: then it is up but lost or dropped this one (FreeRADIUS reasons the same
        way). Zombie and dead servers keep their status and the time they got it.

        Returns:
            The status changes.
        """
        changes = self.tick(now)
        health = self._health[name]
        answered_since = health.last_answer is not None and health.last_answer > sent
        if health.status is HomeServerStatus.ALIVE and not answered_since:
            self._set(name, HomeServerStatus.ZOMBIE, now, changes)
        return changes

    def _set(
        self,
        name: str,
        status: HomeServerStatus,
        now: float,
        changes: list[tuple[str, HomeServerStatus]],
    ) -> None:
        health = self._health[name]
        if health.status is not status:
            health.status = status
            health.since = now
            changes.append((name, status))


class _Link:
    """The sockets to one home server and the logging of what they drop."""

    def __init__(self, server: HomeServer) -> None:
        self.server = server
        self._connections: list[RadiusConnection] = []
        self._opening = asyncio.Lock()

    def _dropped(self, reason: str) -> None:
        log.warning("upstream_reply_dropped", upstream=self.server.name, reason=reason)

    async def connection(self) -> RadiusConnection | None:
        """Return an open socket with a free Identifier, opening one if needed.

        Returns:
            None when every allowed socket has 256 requests in flight.

        Raises:
            OSError: the socket cannot be opened (for example the name does not resolve).
            TimeoutError: resolving the name took longer than the response window.
        """
        available = self._available()
        if available is not None:
            return available
        # One opener at a time, or every request arriving meanwhile would open its own socket.
        # The wait is bounded: the holder's open is bounded by the response window.
        async with self._opening:
            available = self._available()
            if available is not None:
                return available
            if len(self._connections) >= _MAX_CONNECTIONS:
                return None
            server = self.server
            async with asyncio.timeout(server.response_window):
                connection = await RadiusConnection.open(
                    server.host,
                    server.port,
                    server.secret,
                    require_message_authenticator=server.require_message_authenticator,
                    on_drop=self._dropped,
                )
            self._connections.append(connection)
            return connection

    def _available(self) -> RadiusConnection | None:
        self._connections = [c for c in self._connections if not c.closed]
        for connection in self._connections:
            if not connection.full:
                return connection
        return None

    def close(self) -> None:
        """Close every socket."""
        for connection in self._connections:
            connection.close()
        self._connections.clear()


class UpstreamRadiusAuthenticator:
    """A :class:`~mfa_radius.ports.PrimaryAuthenticator` asking upstream RADIUS home servers.

    Call :meth:`start` to run the Status-Server prober and :meth:`close` at shutdown;
    :meth:`verify` also works without the prober (zombies then wait for ``zombie_period`` and
    ``revive_interval``).

    Args:
        servers: home servers in fail-over order.
        clock: time source for the liveness bookkeeping; the waits themselves run on the
            event loop's clock.
        forward_attributes: request attribute types copied from the NAS's request.
        reply_filter: when given, only reply attributes of these types are kept on accept
            (Vendor-Specific, 26, is kept or dropped whole); None keeps all but the hop's own.
        probe_interval: seconds between Status-Server probes of zombie and dead servers.

    Raises:
        ValueError: no servers, duplicate names, a non-positive ``probe_interval``, or a
            forwarded attribute this class sets itself (User-Name, User-Password, State,
            Proxy-State, EAP-Message, Message-Authenticator, CHAP-Password).
    """

    def __init__(
        self,
        servers: Sequence[HomeServer],
        *,
        clock: Clock,
        forward_attributes: Sequence[int] = DEFAULT_FORWARD,
        reply_filter: Collection[int] | None = None,
        probe_interval: float = 5.0,
    ) -> None:
        refused = sorted(int(t) for t in set(forward_attributes) & _NEVER_FORWARDED)
        if refused:
            raise ValueError(f"attribute types {refused} cannot be forwarded upstream")
        if not probe_interval > 0:
            raise ValueError("probe_interval must be positive")
        self._clock = clock
        self._pool = HomeServerPool(servers, clock.now())
        self._links = {s.name: _Link(s) for s in servers}
        self._forward = frozenset(int(t) for t in forward_attributes)
        self._reply_filter = None if reply_filter is None else frozenset(reply_filter)
        self._probe_interval = probe_interval
        self._prober: asyncio.Task[None] | None = None

    @property
    def max_wait(self) -> float:
        """Seconds :meth:`verify` may take when no server answers: the response windows summed.

        ``app.py`` can hold this against the primary deadline and the NAS's own timeout
        (fail-over is useless if the NAS gives up first).
        """
        return sum(s.response_window for s in self._pool.servers)

    async def start(self) -> None:
        """Start probing zombie and dead home servers in the background."""
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe_forever(), name="home-server-prober")

    async def close(self) -> None:
        """Stop the prober and close every socket."""
        prober, self._prober = self._prober, None
        if prober is not None:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                async with asyncio.timeout(5.0):
                    await prober
        for link in self._links.values():
            link.close()

    def status(self) -> list[tuple[str, str]]:
        """Return ``(name, "alive" | "zombie" | "dead")`` for each home server, in order."""
        return [(name, str(st)) for name, st in self._pool.status(self._clock.now())]

    async def check(self) -> None:
        """Send Status-Server to every home server that takes it (for ``check-config``).

        Servers with ``status_check`` off are skipped: they may not answer Status-Server,
        and a test login would need a real account.

        Raises:
            PrimaryUnavailable: naming the servers that did not answer.
        """
        servers = [s for s in self._pool.servers if s.status_check]
        results = await asyncio.gather(*(self._probe(s) for s in servers))
        silent = [s.name for s, ok in zip(servers, results, strict=True) if not ok]
        if silent:
            raise PrimaryUnavailable(
                "upstream", "no answer to Status-Server from " + ", ".join(silent)
            )

    async def verify(
        self, attempt: AuthAttempt, password: bytes, *, upstream_state: bytes | None = None
    ) -> PrimaryResult:
        """Ask the home servers, in fail-over order, whether ``password`` is right.

        Args:
            attempt: the NAS's request; its raw User-Name is sent (the home server applies
                its own normalisation) with the attributes in ``forward_attributes``.
            password: the password, or the answer to the upstream's challenge.
            upstream_state: the State of the upstream's Access-Challenge being answered
                (RFC 2865 §5.24: sent back unmodified); None for a first request.

        Returns:
            PrimaryAccept with the kept reply attributes, PrimaryReject
            (``primary_rejected``, with the Reply-Message text) or PrimaryChallenge (the
            upstream's State and Reply-Message).

        Raises:
            PrimaryUnavailable: no home server answered.
        """
        if len(password) > 128:
            # RFC 2865 §5.2 cannot carry it; no home server could accept it.
            return PrimaryReject(RejectReason.BAD_PASSWORD)
        attributes = self._request_attributes(attempt, upstream_state)
        for server in self._pool.order(self._clock.now()):
            reply = await self._exchange(server, Code.ACCESS_REQUEST, attributes, password=password)
            if reply is None:
                continue
            return replace(self._result(server, reply), upstream=server.name)
        raise PrimaryUnavailable("upstream", "no home server answered")

    def _request_attributes(
        self, attempt: AuthAttempt, upstream_state: bytes | None
    ) -> list[Attribute]:
        """User-Name as received, the forwarded attributes in NAS order, then State."""
        attributes: list[Attribute] = [(AttrType.USER_NAME, attempt.raw_username.encode())]
        attributes += [(t, v) for t, v in attempt.request_attributes if t in self._forward]
        if upstream_state is not None:
            attributes.append((AttrType.STATE, upstream_state))
        return attributes

    async def _exchange(
        self,
        server: HomeServer,
        code: Code,
        attributes: Sequence[Attribute],
        *,
        password: bytes | None = None,
    ) -> RadiusPacket | None:
        """Send one request to ``server`` and wait its response window; track liveness.

        Returns:
            The verified reply of an expected kind, or None (no answer, no socket).
        """
        link = self._links[server.name]
        sent = self._clock.now()
        try:
            connection = await link.connection()
        except (OSError, TimeoutError) as exc:
            log.warning("upstream_unreachable", upstream=server.name, error=type(exc).__name__)
            self._note(self._pool.timed_out(server.name, sent, self._clock.now()))
            return None
        if connection is None:
            log.warning("upstream_busy", upstream=server.name)
            return None
        reply = await connection.request(
            code, attributes, wait=server.response_window, password=password
        )
        now = self._clock.now()
        if reply is not None and code is Code.ACCESS_REQUEST and reply.code not in _REPLY_CODES:
            log.warning("upstream_reply_dropped", upstream=server.name, reason="unexpected_code")
            reply = None
        if reply is None:
            self._note(self._pool.timed_out(server.name, sent, now))
        else:
            self._note(self._pool.answered(server.name, now))
        return reply

    async def _probe(self, server: HomeServer) -> bool:
        """Send one Status-Server (RFC 5997 §3, signed as it requires); True if answered."""
        return await self._exchange(server, Code.STATUS_SERVER, []) is not None

    async def _probe_forever(self) -> None:
        """Probe zombie and dead servers every ``probe_interval`` seconds."""
        while True:
            await asyncio.sleep(self._probe_interval)
            due = self._pool.to_probe(self._clock.now())
            if due:
                await asyncio.gather(*(self._probe(s) for s in due))

    def _result(self, server: HomeServer, reply: RadiusPacket) -> PrimaryResult:
        """Turn a verified Access-Accept/Reject/Challenge into the port's result."""
        message = _reply_message(reply)
        match reply.code:
            case Code.ACCESS_ACCEPT:
                return PrimaryAccept(attributes=self._kept(reply))
            case Code.ACCESS_CHALLENGE:
                state = reply.get(AttrType.STATE)
                if not state:
                    # RFC 2865 §4.4 makes State optional, but without it the answer cannot be
                    # routed back to this exchange through the NAS's round trip.
                    log.warning("upstream_challenge_without_state", upstream=server.name)
                    return PrimaryReject(RejectReason.PRIMARY_REJECTED, message)
                return PrimaryChallenge(state=state, prompt=message or "")
            case _:
                return PrimaryReject(RejectReason.PRIMARY_REJECTED, message)

    def _kept(self, reply: RadiusPacket) -> tuple[Attribute, ...]:
        """The reply attributes passed on to the NAS, in the upstream's order."""
        keep = self._reply_filter
        return tuple(
            (t, v)
            for t, v in reply.attributes
            if t not in _NEVER_KEPT and (keep is None or t in keep)
        )

    def _note(self, changes: list[tuple[str, HomeServerStatus]]) -> None:
        """Log liveness changes: losing a server is a warning, getting it back news."""
        for name, status in changes:
            level = log.info if status is HomeServerStatus.ALIVE else log.warning
            level("home_server_marked", upstream=name, status=str(status))


def _reply_message(reply: RadiusPacket) -> str | None:
    """The Reply-Message text, or None without one.

    RFC 2865 §5.18: several Reply-Messages are shown in packet order; they are concatenated
    without a separator because a server splits a long text over several attributes at the
    253-octet limit, and a separator would then land inside a word.
    """
    parts = reply.get_all(AttrType.REPLY_MESSAGE)
    if not parts:
        return None
    return b"".join(parts).decode("utf-8", errors="replace")
