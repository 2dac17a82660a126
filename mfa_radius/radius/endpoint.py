"""The server endpoint: what to do with each datagram arriving on the authentication port.

A sans-I/O state machine in the h11 mould: the UDP shell hands it ``(bytes, source, now)`` and
gets back a value saying what to do:

* :class:`Drop` - send nothing; ``reason`` is a stable token for logs and counters;
* :class:`Respond` - send these bytes back (a cached reply, or a Status-Server answer);
* :class:`NewRequest` - a verified Access-Request to authenticate; the shell later calls
  :meth:`Endpoint.reply` (or :meth:`Endpoint.abandon`).

It never reads a clock, draws random numbers or touches a socket: time comes in as ``now``.

Checks, in order, for every datagram:

1. The source address must belong to a configured client, else ``unknown_client`` (RFC 2865 §3:
   silently discarded).
2. Only Access-Request and Status-Server are served here, else ``unexpected_code``.
3. RFC 5080 §2.2.2 duplicate detection, before any cryptography: the key is (client, source IP,
   source port, Identifier, Request Authenticator). A retransmission of a request that is still
   being worked on is dropped (``duplicate_in_progress``); one that was answered gets the cached
   reply byte for byte (``Respond(reason="duplicate")``), so a retransmitting gateway never
   starts a second SMS. A request with the same Identifier but another authenticator is new
   (the NAS reused the Identifier). Same key but different bytes is not a retransmission and is
   dropped (``conflicting_duplicate``).
4. The packet must decode (``malformed``, with the codec's token in ``detail``).
5. Message-Authenticator (RFC 3579 §3.2) is verified whenever present
   (``bad_message_authenticator``).
6. Status-Server (RFC 5997 §3) is answered with an Access-Accept only when it carries a valid
   Message-Authenticator (``status_server_without_message_authenticator``); it is not cached.
7. BlastRADIUS policy per client, with the meaning FreeRADIUS 3.2.5 gave these settings
   (``security`` section of ``radiusd.conf`` and per-client overrides in ``clients.conf``; the
   learnt per-client state mirrors FreeRADIUS' ``received_message_authenticator`` and
   ``first_packet_no_proxy_state`` client flags):

   * ``require_message_authenticator``: ``yes`` drops an Access-Request without it
     (``missing_message_authenticator``); ``no`` accepts it; ``auto`` accepts it until the
     client has sent one Access-Request with a valid Message-Authenticator, and requires it from
     then on. A request that also carries EAP-Message does not teach ``auto`` anything, because
     RFC 3579 §3.2 makes Message-Authenticator mandatory with EAP whatever the NAS does for PAP.
   * ``limit_proxy_state``: ``yes`` drops an Access-Request that has Proxy-State but no
     Message-Authenticator (``proxy_state_without_message_authenticator``), because Proxy-State
     is where a BlastRADIUS attacker hides the MD5 collision blocks; ``no`` accepts it;
     ``auto`` decides from the client's *first* accepted Access-Request (while ``auto`` has not
     already learnt that the client sends Message-Authenticator): no Proxy-State in it means
     the client is a NAS, not a proxy, and the limit applies from the next request on;
     Proxy-State in it means the client is a proxy and the limit stays off. It is judged on the
     first packet only so that an attacker cannot switch a real proxy's limit on by spoofing
     it; the reverse risk (a spoofed first packet right after a restart) is why FreeRADIUS
     advises ``yes`` for servers reachable from the Internet. The setting is moot when
     Message-Authenticator is required, since the request is then dropped at the earlier check.
   * An EAP-Message without Message-Authenticator is dropped (RFC 3579 §3.2,
     ``eap_without_message_authenticator``).

8. A hidden User-Password is revealed with the client's secret (RFC 2865 §5.2); a malformed one
   is ``malformed`` / ``bad_password_length``.
9. The request is recorded as in progress; when the table is full, the oldest *answered*
   entries are evicted first, and if only in-progress entries remain the request is dropped
   (``cache_full``) rather than risk a second SMS for a retransmission.

Every reply gets Message-Authenticator as its first attribute and the request's Proxy-State
attributes, unmodified and in order, at its end (RFC 2865 §5.33). That fixed part can be known
from the request alone (:func:`reply_overhead`), so the shell can tell, before any work, whether
the reply it might send fits the 4096 octets of RFC 2865 §3 (:func:`attributes_octets` measures
its own attributes); a reply that does not fit is a programming error for :meth:`Endpoint.reply`.

Replies stay cached for ``reply_ttl`` seconds after they are sent; in-progress entries also
expire ``reply_ttl`` after they arrived, a safety net in case the shell neither replies nor
abandons.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from mfa_radius.errors import MalformedPacket
from mfa_radius.radius import codec
from mfa_radius.radius.clients import Client, ClientTable, MaPolicy, ProxyStatePolicy
from mfa_radius.radius.packet import Attribute, AttrType, Code, RadiusPacket

_ACCESS_REQUEST = int(Code.ACCESS_REQUEST)
_STATUS_SERVER = int(Code.STATUS_SERVER)
_REPLY_CODES = frozenset({Code.ACCESS_ACCEPT, Code.ACCESS_REJECT, Code.ACCESS_CHALLENGE})
_PROXY_STATE = int(AttrType.PROXY_STATE)
_EAP_MESSAGE = int(AttrType.EAP_MESSAGE)
_USER_PASSWORD = int(AttrType.USER_PASSWORD)

_Key = tuple[str, str, int, int, bytes]


@dataclass(frozen=True, slots=True)
class Drop:
    """Send nothing.

    Attributes:
        reason: stable token: ``unknown_client``, ``unexpected_code``, ``malformed``,
            ``duplicate_in_progress``, ``conflicting_duplicate``, ``bad_message_authenticator``,
            ``missing_message_authenticator``, ``eap_without_message_authenticator``,
            ``proxy_state_without_message_authenticator``,
            ``status_server_without_message_authenticator``, ``status_server_disabled``,
            ``cache_full``.
        detail: for ``malformed``, the codec's reason (``bad_length``, ...); otherwise empty.
    """

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Respond:
    """Send ``data`` back to the source.

    Attributes:
        data: the datagram payload.
        reason: ``duplicate`` (the cached reply to a retransmission) or ``status_server``.
    """

    data: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class RequestKey:
    """The RFC 5080 §2.2.2 duplicate-detection key of one Access-Request.

    Attributes:
        client: the client's configured name.
        src_ip: source address as the socket reported it.
        src_port: source UDP port.
        identifier: the packet Identifier.
        authenticator: the 16-octet Request Authenticator.
    """

    client: str
    src_ip: str
    src_port: int
    identifier: int
    authenticator: bytes

    def store_key(self) -> str:
        """Return a fixed-length hex key for a cluster-wide duplicate cache.

        The fields are length-prefixed before hashing so that no two keys share an encoding.

        Returns:
            The hex SHA-256 of the key fields.
        """
        client = self.client.encode()
        src_ip = self.src_ip.encode()
        material = b"".join(
            (
                struct.pack("!H", len(client)),
                client,
                struct.pack("!H", len(src_ip)),
                src_ip,
                struct.pack("!HB", self.src_port, self.identifier),
                self.authenticator,
            )
        )
        return hashlib.sha256(material).hexdigest()

    def _tuple(self) -> _Key:
        return (self.client, self.src_ip, self.src_port, self.identifier, self.authenticator)


@dataclass(frozen=True, slots=True)
class NewRequest:
    """A verified Access-Request for the service to authenticate.

    Attributes:
        key: its duplicate-detection key.
        client: the client it came from.
        packet: the decoded packet (User-Password still hidden in it).
        password: the revealed User-Password, or None when the request has none.
    """

    key: RequestKey
    client: Client
    packet: RadiusPacket
    password: bytes | None = field(repr=False)


Event = Drop | Respond | NewRequest
"""What :meth:`Endpoint.receive` returns."""

_MA_OCTETS = 2 + 16
"""Message-Authenticator as it sits in every reply: type, length and the 16-octet HMAC-MD5."""


def attributes_octets(attributes: Sequence[Attribute]) -> int:
    """Return how many octets ``attributes`` take in a packet: each value plus its type and length.

    Args:
        attributes: ``(type, value)`` pairs, each value at most 253 octets (RFC 2865 §5).

    Returns:
        The sum of ``2 + len(value)``.
    """
    return sum(2 + len(value) for _, value in attributes)


def reply_overhead(request: NewRequest) -> int:
    """Return the octets every reply to ``request`` takes besides its own attributes.

    That is the header (RFC 2865 §3), the Message-Authenticator every reply starts with (RFC
    3579 §3.2) and the request's Proxy-State attributes, echoed at its end (RFC 2865 §5.33). A
    reply fits when this plus :func:`attributes_octets` of its attributes is at most
    ``codec.MAX_PACKET_LENGTH`` (4096).

    Args:
        request: what :meth:`Endpoint.receive` returned.

    Returns:
        The fixed part's length in octets (38 for a request without Proxy-State).
    """
    echoed = sum(2 + len(value) for t, value in request.packet.attributes if t == _PROXY_STATE)
    return codec.HEADER_LENGTH + _MA_OCTETS + echoed


@dataclass(slots=True)
class _Entry:
    """One duplicate-cache slot: when it was (re)stamped, the request bytes, the reply."""

    stamp: float
    request: bytes | None
    reply: bytes | None


@dataclass(slots=True)
class _ClientState:
    """What the endpoint has learnt about one client (FreeRADIUS ``auto`` policies)."""

    sent_message_authenticator: bool = False
    seen_first_packet: bool = False
    first_packet_no_proxy_state: bool = False


class Endpoint:
    """The authentication-port state machine: duplicate cache, Status-Server, BlastRADIUS policy.

    Args:
        clients: the NAS table.
        reply_ttl: seconds a sent reply stays cached for retransmissions (RFC 5080 §2.2.2;
            FreeRADIUS calls it ``cleanup_delay``). Must cover the NAS's whole retry window.
        max_entries: bound on cached requests and replies together.
        status_server: answer Status-Server (RFC 5997); when False it is dropped and counted.

    Raises:
        ValueError: a non-positive ``reply_ttl`` or ``max_entries``.
    """

    def __init__(
        self,
        clients: ClientTable,
        *,
        reply_ttl: float = 30.0,
        max_entries: int = 200_000,
        status_server: bool = True,
    ) -> None:
        self._status_server_on = status_server
        if reply_ttl <= 0:
            raise ValueError("reply_ttl must be positive")
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._clients = clients
        self._ttl = reply_ttl
        self._max = max_entries
        # Both ordered by stamp (the TTL is constant and time only moves forward), so expiry
        # pops from the front in O(expired) and eviction takes the oldest answered entry.
        self._in_progress: OrderedDict[_Key, _Entry] = OrderedDict()
        self._done: OrderedDict[_Key, _Entry] = OrderedDict()
        self._state: dict[str, _ClientState] = {}
        self._counters: dict[str, int] = {}
        self.counters: Mapping[str, int] = MappingProxyType(self._counters)
        """Drop reason -> number of datagrams dropped for it (read-only, live)."""

    def __len__(self) -> int:
        """Return the number of cache entries, in progress and answered."""
        return len(self._in_progress) + len(self._done)

    def _drop(self, reason: str, detail: str = "") -> Drop:
        self._counters[reason] = self._counters.get(reason, 0) + 1
        return Drop(reason, detail)

    def receive(self, data: bytes, src: tuple[str, int], now: float) -> Event:
        """Decide what to do with one datagram.

        Args:
            data: the UDP payload.
            src: ``(ip, port)`` of the sender.
            now: the current time in seconds (any monotonic origin, as long as it is the same
                for every call).

        Returns:
            :class:`Drop`, :class:`Respond` or :class:`NewRequest`; see the module docstring for
            the order of checks.
        """
        ip, port = src
        client = self._clients.lookup(ip)
        if client is None:
            return self._drop("unknown_client")
        if len(data) < codec.HEADER_LENGTH:
            return self._drop("malformed", "too_short")
        code = data[0]
        if code == _STATUS_SERVER:
            return self._status_server(data, client)
        if code != _ACCESS_REQUEST:
            return self._drop("unexpected_code")

        key: _Key = (client.name, ip, port, data[1], data[4:20])
        entry = self._in_progress.get(key)
        if entry is not None:
            if entry.request is not None and entry.request != data:
                return self._drop("conflicting_duplicate")
            return self._drop("duplicate_in_progress")
        entry = self._done.get(key)
        if entry is not None and entry.reply is not None:
            if entry.request is not None and entry.request != data:
                return self._drop("conflicting_duplicate")
            return Respond(entry.reply, "duplicate")

        try:
            packet = codec.decode(data)
        except MalformedPacket as exc:
            return self._drop("malformed", exc.reason)

        verdict = self._check_policy(data, packet, client)
        if verdict is not None:
            return verdict

        password: bytes | None = None
        hidden = packet.get(_USER_PASSWORD)
        if hidden is not None:
            try:
                password = codec.unhide_password(hidden, client.secret, packet.authenticator)
            except MalformedPacket as exc:
                return self._drop("malformed", exc.reason)

        if not self._make_room(1):
            return self._drop("cache_full")
        self._in_progress[key] = _Entry(now, data, None)
        self._learn(packet, client)
        request_key = RequestKey(client.name, ip, port, packet.identifier, packet.authenticator)
        return NewRequest(request_key, client, packet, password)

    def _status_server(self, data: bytes, client: Client) -> Drop | Respond:
        """Answer a Status-Server "ping" (RFC 5997 §3): MA required, Access-Accept, no caching."""
        if not self._status_server_on:
            return self._drop("status_server_disabled")
        try:
            packet = codec.decode(data)
        except MalformedPacket as exc:
            return self._drop("malformed", exc.reason)
        verified = codec.verify_message_authenticator(data, client.secret)
        if verified is None:
            return self._drop("status_server_without_message_authenticator")
        if not verified:
            return self._drop("bad_message_authenticator")
        reply = codec.encode_response(
            Code.ACCESS_ACCEPT, packet.identifier, packet.authenticator, (), client.secret
        )
        return Respond(reply, "status_server")

    def _check_policy(self, data: bytes, packet: RadiusPacket, client: Client) -> Drop | None:
        """Apply Message-Authenticator and Proxy-State rules to an Access-Request."""
        verified = codec.verify_message_authenticator(data, client.secret)
        if verified is not None:
            return None if verified else self._drop("bad_message_authenticator")
        state = self._state.get(client.name)
        ma_policy = client.require_message_authenticator
        if ma_policy is MaPolicy.YES or (
            ma_policy is MaPolicy.AUTO and state is not None and state.sent_message_authenticator
        ):
            return self._drop("missing_message_authenticator")
        has_eap = has_proxy_state = False
        for attr_type, _value in packet.attributes:
            if attr_type == _PROXY_STATE:
                has_proxy_state = True
            elif attr_type == _EAP_MESSAGE:
                has_eap = True
        if has_eap:
            return self._drop("eap_without_message_authenticator")
        if has_proxy_state:
            ps_policy = client.limit_proxy_state
            if ps_policy is ProxyStatePolicy.YES or (
                ps_policy is ProxyStatePolicy.AUTO
                and state is not None
                and state.first_packet_no_proxy_state
            ):
                return self._drop("proxy_state_without_message_authenticator")
        return None

    def _learn(self, packet: RadiusPacket, client: Client) -> None:
        """Update the per-client ``auto`` state after an Access-Request was accepted."""
        ma_auto = client.require_message_authenticator is MaPolicy.AUTO
        ps_auto = client.limit_proxy_state is ProxyStatePolicy.AUTO
        if not (ma_auto or ps_auto):
            return
        state = self._state.get(client.name)
        if state is None:
            state = self._state[client.name] = _ClientState()
        if ma_auto and not state.sent_message_authenticator:
            attr_types = {t for t, _ in packet.attributes}
            if AttrType.MESSAGE_AUTHENTICATOR in attr_types and _EAP_MESSAGE not in attr_types:
                state.sent_message_authenticator = True
        if ps_auto and not state.seen_first_packet and not state.sent_message_authenticator:
            state.seen_first_packet = True
            state.first_packet_no_proxy_state = not packet.has(_PROXY_STATE)

    def _make_room(self, needed: int) -> bool:
        """Evict the oldest answered entries until ``needed`` slots are free."""
        while len(self._in_progress) + len(self._done) + needed > self._max:
            if not self._done:
                return False
            self._done.popitem(last=False)
        return True

    def reply(
        self, request: NewRequest, code: Code, attributes: Sequence[Attribute], now: float
    ) -> bytes:
        """Encode the answer to ``request`` and cache it for retransmissions.

        Message-Authenticator goes first (RFC 3579 §3.2, BlastRADIUS); the request's
        Proxy-State attributes are appended unmodified and in order (RFC 2865 §5.33), so
        ``attributes`` must not contain Proxy-State of its own.

        Args:
            request: what :meth:`receive` returned.
            code: ``ACCESS_ACCEPT``, ``ACCESS_REJECT`` or ``ACCESS_CHALLENGE``.
            attributes: the reply attributes (User-Password never among them).
            now: the current time, which starts the reply's ``reply_ttl``.

        Returns:
            The datagram to send to ``request.key.src_ip``/``src_port``. It is cached unless
            the request's entry expired and the table is full of requests in progress.

        Raises:
            ValueError: another code, or attributes the codec refuses (a value over 253
                octets, a packet over 4096: check with :func:`reply_overhead` first).
        """
        if code not in _REPLY_CODES:
            raise ValueError(f"{code!r} is not an answer to an Access-Request")
        packet = request.packet
        echoed = [(t, v) for t, v in packet.attributes if t == _PROXY_STATE]
        data = codec.encode_response(
            code,
            packet.identifier,
            packet.authenticator,
            [*attributes, *echoed] if echoed else attributes,
            request.client.secret,
        )
        self._store(request.key._tuple(), data, now)
        return data

    def remember_reply(self, request: NewRequest, data: bytes, now: float) -> None:
        """Cache a reply produced elsewhere (another cluster node) for local retransmissions.

        Args:
            request: the local copy of the request.
            data: the reply datagram as the other node encoded it.
            now: the current time, which starts the reply's ``reply_ttl``.
        """
        self._store(request.key._tuple(), data, now)

    def _store(self, key: _Key, data: bytes, now: float) -> None:
        entry = self._in_progress.pop(key, None)
        previous = self._done.pop(key, None)
        if entry is None:
            entry = previous
        request = entry.request if entry is not None else None
        if entry is None and not self._make_room(1):
            return
        self._done[key] = _Entry(now, request, data)

    def abandon(self, request: NewRequest) -> None:
        """Forget an in-progress request that will get no reply.

        A retransmission of it is then processed as a new request. Does nothing if the request
        was already answered or expired.
        """
        self._in_progress.pop(request.key._tuple(), None)

    def expire(self, now: float) -> None:
        """Remove entries older than ``reply_ttl``, in time proportional to how many expire."""
        cutoff = now - self._ttl
        for table in (self._in_progress, self._done):
            while table:
                key, entry = next(iter(table.items()))
                if entry.stamp > cutoff:
                    break
                del table[key]

    def next_deadline(self) -> float | None:
        """Return when :meth:`expire` next has work to do, or None when the cache is empty."""
        stamps = [
            next(iter(table.values())).stamp for table in (self._in_progress, self._done) if table
        ]
        return min(stamps) + self._ttl if stamps else None
