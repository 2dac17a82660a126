"""Asyncio RADIUS clients over UDP, built on our codec.

:class:`RadiusClient` (one request at a time) is used by ``mfa-radius login`` (the admin's
radtest for MFA) and by the tests as the NAS. :class:`RadiusConnection` (many requests in
flight on one socket) carries the upstream RADIUS backend's traffic. Replies are matched by
Identifier and accepted only when their Response Authenticator (RFC 2865 §3) and, when present,
Message-Authenticator (RFC 3579 §3.2) verify with the shared secret; anything else is ignored,
as a NAS would (:func:`reply_problem` says why).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import cast

from mfa_radius.errors import MalformedPacket
from mfa_radius.radius import codec
from mfa_radius.radius.packet import Attribute, AttrType, Code, RadiusPacket


@dataclass(frozen=True, slots=True)
class LoginResult:
    """How a login through :meth:`RadiusClient.login` ended.

    Attributes:
        outcome: ``accept``, ``reject`` or ``challenge`` (the prompt was not answered).
        packet: the final reply.
        prompts: the Reply-Messages of each challenge, in order.
    """

    outcome: str
    packet: RadiusPacket
    prompts: list[str] = field(default_factory=list)


def reply_problem(
    data: bytes,
    identifier: int,
    authenticator: bytes,
    secret: bytes,
    *,
    require_message_authenticator: bool = True,
) -> str | None:
    """Say why ``data`` is not a genuine reply to a request, or None when it is.

    The checks run cheapest first. A reply that fails one is to be ignored as if lost, never
    taken as an answer: anyone on the path can send a datagram to our source port.

    Args:
        data: the datagram as received.
        identifier: the request's Identifier.
        authenticator: the request's Request Authenticator.
        secret: the shared secret.
        require_message_authenticator: refuse a reply without Message-Authenticator. Without
            it the reply's attributes are covered only by the MD5 Response Authenticator,
            which the BlastRADIUS attack (CVE-2024-3596) forges by a chosen-prefix collision.

    Returns:
        None for a genuine reply, else a stable token: ``too_short``, ``wrong_identifier``,
        ``bad_response_authenticator`` (RFC 2865 §3: also what a wrong shared secret looks
        like), ``bad_message_authenticator`` (RFC 3579 §3.2) or
        ``missing_message_authenticator``.
    """
    if len(data) < codec.HEADER_LENGTH:
        return "too_short"
    if data[1] != identifier:
        return "wrong_identifier"
    if not codec.verify_response_authenticator(data, authenticator, secret):
        return "bad_response_authenticator"
    valid = codec.verify_message_authenticator(data, secret, authenticator)
    if valid is False:
        return "bad_message_authenticator"
    if valid is None and require_message_authenticator:
        return "missing_message_authenticator"
    return None


class RadiusConnection(asyncio.DatagramProtocol):
    """One connected UDP socket to one RADIUS server, with many requests in flight.

    The Identifier is one octet (RFC 2865 §3), so one socket can have at most 256 requests
    outstanding; :meth:`request` picks an Identifier no request in flight uses, round-robin
    from a random start so that a freed Identifier is not reused at once (a late reply to the
    old request then fails the new request's authenticator check instead of answering it).
    When :attr:`full`, the caller opens another connection: a new source port is a new
    Identifier space (the server's duplicate detection keys on source port and Identifier,
    RFC 5080 §2.2.2).

    Replies are matched by Identifier, then verified with :func:`reply_problem` against that
    request's authenticator. A reply that fails is reported to ``on_drop`` and ignored; the
    request keeps waiting, so a forged datagram cannot cut a genuine answer short.

    Use :meth:`open` to create one.

    Args:
        secret: the shared secret.
        require_message_authenticator: ignore replies without Message-Authenticator.
        on_drop: called with the reason token whenever a datagram is ignored
            (``unexpected_identifier``, ``malformed`` or a :func:`reply_problem` token).
    """

    MAX_OUTSTANDING = 256
    """One Identifier octet (RFC 2865 §3)."""

    def __init__(
        self,
        secret: bytes,
        *,
        require_message_authenticator: bool = True,
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        self._secret = secret
        self._require_ma = require_message_authenticator
        self._on_drop = on_drop
        self._pending: dict[int, tuple[bytes, asyncio.Future[RadiusPacket]]] = {}
        self._next_id = secrets.randbelow(256)
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        secret: bytes,
        *,
        require_message_authenticator: bool = True,
        on_drop: Callable[[str], None] | None = None,
    ) -> RadiusConnection:
        """Open a UDP socket connected to ``host:port``.

        Connecting makes the kernel drop datagrams from any other source, the first half of
        RFC 2865 §3's "silently discard" for replies. A host name is resolved here, so the
        caller bounds this call with a deadline.

        Args:
            host: the server's address or name.
            port: the server's UDP port.
            secret: the shared secret.
            require_message_authenticator: ignore replies without Message-Authenticator.
            on_drop: called with the reason whenever a datagram is ignored.

        Returns:
            The open connection.

        Raises:
            OSError: the address cannot be resolved or the socket cannot be created.
        """
        connection = cls(
            secret, require_message_authenticator=require_message_authenticator, on_drop=on_drop
        )
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: connection, remote_addr=(host, port))
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (the selector loop's is not a DatagramTransport subclass)."""
        self._transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the closed transport; requests still waiting run into their deadline."""
        self._transport = None

    def error_received(self, exc: Exception) -> None:
        """Ignore ICMP errors (port unreachable...).

        They carry no Identifier, so they cannot be tied to one request, and they are not
        authenticated, so trusting them would let anyone fail a request over early.
        """

    @property
    def closed(self) -> bool:
        """True once the socket is closed (or was never opened)."""
        return self._transport is None or self._transport.is_closing()

    @property
    def full(self) -> bool:
        """True while all 256 Identifiers are in flight."""
        return len(self._pending) >= self.MAX_OUTSTANDING

    @property
    def outstanding(self) -> int:
        """The number of requests waiting for their reply."""
        return len(self._pending)

    def close(self) -> None:
        """Close the socket; requests still waiting run into their deadline."""
        if self._transport is not None:
            self._transport.close()

    def _free_identifier(self) -> int:
        for _ in range(self.MAX_OUTSTANDING):
            self._next_id = (self._next_id + 1) % 256
            if self._next_id not in self._pending:
                return self._next_id
        raise RuntimeError("all 256 Identifiers are in flight; open another connection")

    async def request(
        self,
        code: Code,
        attributes: Sequence[Attribute],
        *,
        wait: float,
        password: bytes | None = None,
        message_authenticator: bool = True,
    ) -> RadiusPacket | None:
        """Send one request and wait up to ``wait`` seconds for its verified reply.

        The request is sent once: retransmitting over UDP to the same server within one
        window buys little on a healthy path, and the caller fails over instead.

        Args:
            code: ``ACCESS_REQUEST`` or ``STATUS_SERVER``.
            attributes: the attributes, without User-Password and Message-Authenticator.
            wait: seconds to wait for the reply.
            password: the clear-text User-Password, hidden here with this server's secret
                and this request's fresh authenticator (RFC 2865 §5.2), appended last.
            message_authenticator: sign the request (RFC 3579 §3.2; the default).

        Returns:
            The verified, decoded reply; None when none came in time.

        Raises:
            RuntimeError: the socket is closed, or :attr:`full`.
            ValueError: the request cannot be encoded (a password over 128 octets, a value
                over 253 octets, a packet over 4096 octets).
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            raise RuntimeError("the connection is closed")
        identifier = self._free_identifier()
        authenticator = secrets.token_bytes(16)
        attrs = list(attributes)
        if password is not None:
            hidden = codec.hide_password(password, self._secret, authenticator)
            attrs.append((AttrType.USER_PASSWORD, hidden))
        data = codec.encode_request(
            code,
            identifier,
            authenticator,
            attrs,
            self._secret,
            message_authenticator=message_authenticator,
        )
        future: asyncio.Future[RadiusPacket] = asyncio.get_running_loop().create_future()
        self._pending[identifier] = (authenticator, future)
        try:
            transport.sendto(data)
            async with asyncio.timeout(wait):
                return await future
        except TimeoutError:
            return None
        finally:
            del self._pending[identifier]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        """Hand a verified reply to the request waiting for it; report anything else."""
        entry = self._pending.get(data[1]) if len(data) >= codec.HEADER_LENGTH else None
        if entry is None:
            self._drop("too_short" if len(data) < codec.HEADER_LENGTH else "unexpected_identifier")
            return
        authenticator, future = entry
        if future.done():
            return  # a second copy of a reply already taken
        problem = reply_problem(
            data,
            data[1],
            authenticator,
            self._secret,
            require_message_authenticator=self._require_ma,
        )
        if problem is not None:
            self._drop(problem)
            return
        try:
            packet = codec.decode(data)
        except MalformedPacket:
            self._drop("malformed")
            return
        future.set_result(packet)

    def _drop(self, reason: str) -> None:
        if self._on_drop is not None:
            self._on_drop(reason)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error (port unreachable) means no answer; the wait times out."""


class RadiusClient:
    """One UDP socket talking to one RADIUS server.

    Args:
        host: server address.
        port: server UDP port.
        secret: shared secret.
        timeout: seconds to wait for each reply.
        require_message_authenticator: ignore replies without a Message-Authenticator
            (BlastRADIUS); turn off only for a server that cannot send one.
    """

    def __init__(
        self,
        host: str,
        port: int,
        secret: bytes,
        *,
        timeout: float = 5.0,
        require_message_authenticator: bool = True,
    ) -> None:
        self._require_ma = require_message_authenticator
        self._host = host
        self._port = port
        self._secret = secret
        self._timeout = timeout
        self._next_id = secrets.randbelow(256)
        self._transport: asyncio.DatagramTransport | None = None
        self._receiver = _Receiver()

    async def __aenter__(self) -> RadiusClient:
        """Open the socket."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self._receiver, remote_addr=(self._host, self._port)
        )
        self._transport = transport
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the socket."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _identifier(self) -> int:
        self._next_id = (self._next_id + 1) % 256
        return self._next_id

    def build_request(
        self,
        attributes: Sequence[Attribute],
        *,
        password: bytes | None = None,
        code: Code = Code.ACCESS_REQUEST,
        message_authenticator: bool = True,
        identifier: int | None = None,
        authenticator: bytes | None = None,
    ) -> tuple[bytes, int, bytes]:
        """Encode a request without sending it (for retransmission tests).

        Returns:
            ``(datagram, identifier, request authenticator)``.
        """
        ident = self._identifier() if identifier is None else identifier
        auth = secrets.token_bytes(16) if authenticator is None else authenticator
        attrs = list(attributes)
        if password is not None:
            attrs.append(
                (AttrType.USER_PASSWORD, codec.hide_password(password, self._secret, auth))
            )
        data = codec.encode_request(
            code, ident, auth, attrs, self._secret, message_authenticator=message_authenticator
        )
        return data, ident, auth

    def send_raw(self, data: bytes) -> None:
        """Send a datagram as it is."""
        if self._transport is None:
            raise RuntimeError("the client is not open")
        self._transport.sendto(data)

    async def receive_raw(self, wait: float) -> bytes | None:
        """Wait for the next datagram; None after ``wait`` seconds."""
        try:
            async with asyncio.timeout(wait):
                return await self._receiver.queue.get()
        except TimeoutError:
            return None

    async def wait_reply(self, identifier: int, authenticator: bytes) -> RadiusPacket:
        """Wait for the verified reply to a request sent with :meth:`send_raw`.

        Raises:
            TimeoutError: no valid reply within the client's timeout.
        """
        async with asyncio.timeout(self._timeout):
            while True:
                data = await self._receiver.queue.get()
                if self.verify_reply(data, identifier, authenticator):
                    return codec.decode(data)

    def verify_reply(self, data: bytes, identifier: int, authenticator: bytes) -> bool:
        """Say whether ``data`` is a genuine reply to the request (id, authenticators)."""
        return (
            reply_problem(
                data,
                identifier,
                authenticator,
                self._secret,
                require_message_authenticator=self._require_ma,
            )
            is None
        )

    async def status_server(self, *, message_authenticator: bool = True) -> RadiusPacket:
        """Ask whether the server is alive (RFC 5997 §3); it answers Access-Accept.

        Raises:
            TimeoutError: no valid reply within the client's timeout.
        """
        return await self.request(
            [], code=Code.STATUS_SERVER, message_authenticator=message_authenticator
        )

    async def request(
        self,
        attributes: Sequence[Attribute],
        *,
        password: bytes | None = None,
        code: Code = Code.ACCESS_REQUEST,
        message_authenticator: bool = True,
    ) -> RadiusPacket:
        """Send one request and return its verified reply.

        Raises:
            TimeoutError: no valid reply within the client's timeout.
        """
        data, ident, auth = self.build_request(
            attributes, password=password, code=code, message_authenticator=message_authenticator
        )
        self.send_raw(data)
        return await self.wait_reply(ident, auth)

    async def login(
        self,
        user: str,
        password: bytes,
        answer: Callable[[str], str],
        *,
        message_authenticator: bool = True,
        extra: Sequence[Attribute] = (),
        max_rounds: int = 5,
    ) -> LoginResult:
        """Run a whole login: password, then answer each Access-Challenge.

        Args:
            user: User-Name.
            password: the password (or ``password,code`` in append mode).
            answer: called with each challenge prompt; returns what the user types.
            message_authenticator: sign requests (the default; BlastRADIUS).
            extra: more attributes for every request (NAS-Identifier, ...).
            max_rounds: give up after this many challenges.

        Returns:
            The outcome and the final reply.
        """
        prompts: list[str] = []
        state: bytes | None = None
        reply: RadiusPacket | None = None
        secret_part = password
        for _ in range(max_rounds):
            attrs: list[Attribute] = [(AttrType.USER_NAME, user.encode()), *extra]
            if state is not None:
                attrs.append((AttrType.STATE, state))
            reply = await self.request(
                attrs, password=secret_part, message_authenticator=message_authenticator
            )
            if reply.code == Code.ACCESS_ACCEPT:
                return LoginResult("accept", reply, prompts)
            if reply.code != Code.ACCESS_CHALLENGE:
                return LoginResult("reject", reply, prompts)
            prompt = " ".join(
                m.decode("utf-8", errors="replace") for m in reply.get_all(AttrType.REPLY_MESSAGE)
            )
            prompts.append(prompt)
            state = reply.get(AttrType.STATE)
            secret_part = answer(prompt).encode()
        assert reply is not None  # noqa: S101 (max_rounds >= 1 sent at least one request)
        return LoginResult("challenge", reply, prompts)
