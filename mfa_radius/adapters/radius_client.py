"""An asyncio RADIUS client over UDP, built on our codec.

Used by ``mfa-radius login`` (the admin's radtest for MFA), by the tests as the NAS, and as
the base of the upstream RADIUS backend. Replies are matched by Identifier and accepted only
when their Response Authenticator (RFC 2865 §3) and, when present, Message-Authenticator
(RFC 3579 §3.2) verify with the shared secret; anything else is ignored, as a NAS would.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

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
        if len(data) < 20 or data[1] != identifier:
            return False
        if not codec.verify_response_authenticator(data, authenticator, self._secret):
            return False
        valid = codec.verify_message_authenticator(data, self._secret, authenticator)
        return valid is True or (valid is None and not self._require_ma)

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
