"""The request handler: one Access-Request from the endpoint to its reply and audit line.

Transport-neutral: UDP (``transport/udp.py``) and a TLS listener hand it the same
``radius.endpoint.NewRequest`` and send the bytes it returns. For each request it

1. makes sure an answer can be sent at all: a reply may not exceed 4096 octets (RFC 2865 §3),
   and every reply echoes the request's Proxy-State (RFC 2865 §5.33), so a request carrying
   nearly 4 KB of it could be decided but never answered. Such a request is dropped first,
   before anything is claimed, sent or stored (``drop:reply_too_large``), see
   :data:`ENGINE_REPLY_OCTETS` for the bound;
2. claims the request cluster-wide (RFC 5080 §2.2.2 duplicate detection across nodes), so a
   retransmission that reached another node gets that node's reply instead of a second
   challenge (and a second text message);
3. normalises the User-Name with the client's profile and lets the engine decide;
4. encodes the reply (RFC 2865 §4.2-§4.4), shares it with the cluster *before* it is sent
   (a NAS that fails over at once must find it), and writes the one ``request_finished``
   line from the decision's audit record.

Every claim ends on every path: in the shared reply, or released when no reply was made (an
exception, a shutdown), so the NAS's retransmissions are worked on again instead of being
dropped as "in progress" until the claim's TTL runs out.

The only ``except Exception`` of the program is here, around one request: whatever goes wrong
with one request is logged with its traceback (no local variables) and that request is
dropped; the listener goes on.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog
from structlog.typing import FilteringBoundLogger

from mfa_radius.core.login import Decision
from mfa_radius.core.model import Accept, AuthAttempt, ChallengeReply, Outcome
from mfa_radius.core.policy import normalise_username
from mfa_radius.core.prompts import fit_octets
from mfa_radius.engine import Engine, Profile
from mfa_radius.errors import StoreUnavailable
from mfa_radius.ports import Clock, ReplyCache, RequestClaim
from mfa_radius.radius.codec import MAX_ATTRIBUTE_VALUE, MAX_PACKET_LENGTH
from mfa_radius.radius.endpoint import Endpoint, NewRequest, attributes_octets, reply_overhead
from mfa_radius.radius.packet import Attribute, AttrType, Code

_log: FilteringBoundLogger = structlog.get_logger("mfa_radius.server")

ENGINE_REPLY_OCTETS = 2 * (2 + MAX_ATTRIBUTE_VALUE)
"""The most octets of attributes an Access-Challenge or Access-Reject of :func:`response` takes.

A Challenge carries one Reply-Message (cut to 253 octets) and one State; a Reject at most
the Reply-Message; no attribute value exceeds 253 octets (RFC 2865 §5), so 510 octets with
their headers. A request is taken on only when that much fits beside the reply's fixed part
(header, Message-Authenticator, echoed Proxy-State): whatever the engine decides, a challenge
it stores can then be sent. An Access-Accept carries the primary's attributes instead, known
only once decided; one that does not fit is dropped the same way, after the decision (its
``request_finished`` line says ``outcome=drop``)."""

_TOO_LARGE = "reply_too_large"


@dataclass(frozen=True, slots=True)
class Handled:
    """What became of one request, for the transport.

    Attributes:
        reply: the bytes to send back, or None to send nothing.
        events: counter keys to add one to (``outcome:accept``, ``drop:<reason>``, ...).
    """

    reply: bytes | None
    events: tuple[str, ...]


class RequestHandler:
    """Turns a new request into its reply, for any transport.

    Args:
        endpoint: the RADIUS endpoint machine (reply encoding, the node's reply cache).
        engine: decides requests.
        profiles: each client's profile, by client name.
        replies: the cluster's reply cache.
        clock: time source.
        node: this node's name for the audit line.
        reply_ttl: seconds replies are kept for retransmissions.
    """

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        engine: Engine,
        profiles: Mapping[str, Profile],
        replies: ReplyCache,
        clock: Clock,
        node: str,
        reply_ttl: float = 30.0,
    ) -> None:
        self._endpoint = endpoint
        self._engine = engine
        self._profiles = profiles
        self._replies = replies
        self._clock = clock
        self._node = node
        self._reply_ttl = reply_ttl
        self._ids: Callable[[], int] = itertools.count(1).__next__

    async def handle(self, request: NewRequest, src: tuple[str, int], server_ip: str) -> Handled:
        """Decide one request and return its reply.

        Args:
            request: the endpoint's new request.
            src: the NAS's address and port.
            server_ip: the local address the request arrived on (audit ``server_ip``).

        Returns:
            The reply (or None) and the counters to bump.
        """
        started = time.perf_counter()
        client = request.client.name
        profile = self._profiles[client]
        raw_user = request.packet.get_text(AttrType.USER_NAME) or ""
        log = _log.bind(
            req_id=f"{self._node}-{self._ids()}",
            client=client,
            src=f"{src[0]}:{src[1]}",
            user=raw_user,
            node=self._node,
            server_ip=server_ip,
        )
        room = MAX_PACKET_LENGTH - reply_overhead(request)
        if room < ENGINE_REPLY_OCTETS:
            # Decided before anything is claimed, sent or stored: no reply could carry a
            # challenge, so none is issued. A retransmission is dropped the same way.
            self._endpoint.abandon(request)
            log.debug("request_dropped", reason=_TOO_LARGE)
            return Handled(None, (f"drop:{_TOO_LARGE}",))
        key = request.key.store_key()
        claim = await self._claim(key)
        if claim is not None and not claim.owner:
            if claim.reply is not None:
                self._endpoint.remember_reply(request, claim.reply, self._clock.now())
                return Handled(claim.reply, ("respond:duplicate_cluster",))
            self._endpoint.abandon(request)
            log.debug("request_dropped", reason="duplicate_in_progress_cluster")
            return Handled(None, ("drop:duplicate_in_progress_cluster",))
        claimed = claim is not None
        try:
            attempt = AuthAttempt(
                username=normalise_username(raw_user, profile.policy),
                raw_username=raw_user,
                password=request.password,
                state=request.packet.get(AttrType.STATE),
                client=client,
                src_ip=src[0],
                request_attributes=request.packet.attributes,
            )
            decision = await self._engine.decide(attempt, profile, log)
            code, attributes = response(decision.outcome)
            if attributes_octets(attributes) > room:
                # Only an Accept gets here (the primary's attributes); the finally releases
                # the claim, so a retransmission is decided again.
                self._endpoint.abandon(request)
                return Handled(None, (self._finish(log, decision, started, dropped=_TOO_LARGE),))
            reply = self._endpoint.reply(request, code, attributes, self._clock.now())
            events: tuple[str, ...] = ()
            if claimed:
                claimed = False  # storing the reply ends the claim
                events = await self._share(key, reply)
            return Handled(reply, (*events, self._finish(log, decision, started)))
        except Exception:  # the per-request guard: one bad request never stops the listener
            self._endpoint.abandon(request)
            log.exception("request_failed")
            return Handled(None, ("drop:internal_error",))
        finally:
            if claimed:
                await self._release(key, log)

    async def _claim(self, key: str) -> RequestClaim | None:
        """Claim the request cluster-wide; None when the store is down.

        A request the store cannot claim is processed here anyway: the store's failure then
        shows in the decision itself (the fail mode), which is better than silence.
        """
        try:
            return await self._replies.claim_request(key, self._reply_ttl)
        except StoreUnavailable:
            return None

    async def _share(self, key: str, reply: bytes) -> tuple[str, ...]:
        """Store the reply for the cluster before it is sent (the store bounds the wait)."""
        try:
            await self._replies.store_reply(key, reply, self._reply_ttl)
        except StoreUnavailable:
            return ("reply_not_shared",)
        return ()

    async def _release(self, key: str, log: FilteringBoundLogger) -> None:
        """End a claim that made no reply; if the store is down the claim's TTL ends it."""
        try:
            await self._replies.release_request(key)
        except StoreUnavailable:
            log.warning("backend_failed", backend="store", error="claim_not_released")

    def _finish(
        self,
        log: FilteringBoundLogger,
        decision: Decision,
        started: float,
        *,
        dropped: str | None = None,
    ) -> str:
        """Write the request's notices and its ``request_finished`` line; return its counter.

        ``dropped`` names why a decided request gets no reply (``outcome=drop``).
        """
        outcome = decision.outcome
        audit = decision.audit
        for notice in audit.notices:
            log.warning(notice.event, **dict(notice.detail))
        if dropped is not None:
            kind, reason = "drop", dropped
        elif isinstance(outcome, ChallengeReply):
            kind = "challenge"
            reason = outcome.retry_reason.value if outcome.retry_reason else "challenge_issued"
        else:
            kind = "accept" if isinstance(outcome, Accept) else "reject"
            reason = outcome.reason.value
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        log.info(
            "request_finished",
            outcome=kind,
            reason=reason,
            duration_ms=duration_ms,
            **audit.fields(),
        )
        return f"drop:{reason}" if dropped is not None else _OUTCOME_KEYS[kind]


_OUTCOME_KEYS = {k: f"outcome:{k}" for k in ("accept", "reject", "challenge")}


def response(outcome: Outcome) -> tuple[Code, list[Attribute]]:
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
