"""RADIUS wire codec: bytes to :class:`RadiusPacket` and back, password hiding, authenticators.

This is the hot path of the server (every datagram passes through :func:`decode` and every
reply through :func:`encode_response`), so it is written for speed: attributes stay
``(type, raw value)`` tuples, no per-attribute objects are built and no dictionary is consulted.
Giving attributes meaning is :mod:`mfa_radius.radius.dictionary`'s job.

Rules of this module:

* No I/O, no clock, no randomness: identifiers and Request Authenticators are arguments, so the
  caller draws them from :mod:`secrets` and tests can pass fixed values.
* :func:`decode` raises only :class:`~mfa_radius.errors.MalformedPacket`, whose ``reason`` is a
  stable token (``too_short``, ``too_long``, ``bad_length``, ``unknown_code``,
  ``bad_attribute_length``, ``attribute_overflow``); the encoders raise ``ValueError`` for
  arguments no correct caller passes (a value over 253 bytes, a packet over 4096 bytes).
* Secrets and MACs are compared with :func:`hmac.compare_digest`.
* Every reply and, by default, every request carries Message-Authenticator as its *first*
  attribute (RFC 3579 §3.2). That is the BlastRADIUS (CVE-2024-3596) mitigation: the forged
  prefix of that attack has to sit in front of the attributes, where the HMAC-MD5 covers it.

MD5 is the algorithm RFC 2865 fixes for the authenticators and password hiding; it is used here
because the protocol requires it, not as a choice.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence

from mfa_radius.errors import MalformedPacket
from mfa_radius.radius.packet import Attribute, AttrType, Code, RadiusPacket

MAX_PACKET_LENGTH = 4096
"""RFC 2865 §3: the maximum length of a RADIUS packet."""

MAX_ATTRIBUTE_VALUE = 253
"""RFC 2865 §5: an attribute is at most 255 octets, two of which are its type and length."""

HEADER_LENGTH = 20
"""Code (1) + Identifier (1) + Length (2) + Authenticator (16), RFC 2865 §3."""

_CODES: dict[int, Code] = {int(c): c for c in Code}
_ZERO16 = bytes(16)
_MA = int(AttrType.MESSAGE_AUTHENTICATOR)
_MA_PLACEHOLDER = bytes((_MA, 18)) + _ZERO16
_REQUEST_CODES = frozenset({Code.ACCESS_REQUEST, Code.STATUS_SERVER, Code.ACCOUNTING_REQUEST})
_RESPONSE_CODES = frozenset(
    {Code.ACCESS_ACCEPT, Code.ACCESS_REJECT, Code.ACCESS_CHALLENGE, Code.ACCOUNTING_RESPONSE}
)
_md5 = hashlib.md5
_hmac_digest = hmac.digest
_pack_header = struct.Struct("!BBH").pack


def decode(data: bytes) -> RadiusPacket:
    """Parse one datagram into a packet, checking every length on the way (RFC 2865 §3, §5).

    Octets after the Length field's count are padding and are ignored (RFC 2865 §3). The
    authenticator and Message-Authenticator are *not* checked here: that needs the client's
    secret, see :func:`verify_message_authenticator`.

    Args:
        data: the UDP payload as received.

    Returns:
        The packet with its attributes in wire order.

    Raises:
        MalformedPacket: with reason ``too_short`` (under 20 octets), ``bad_length`` (Length
            field under 20 or beyond the datagram, which RFC 2865 §3 says to drop),
            ``too_long`` (Length over 4096), ``unknown_code``, ``bad_attribute_length``
            (an attribute length under 2) or ``attribute_overflow`` (an attribute running past
            the packet end).
    """
    size = len(data)
    if size < HEADER_LENGTH:
        raise MalformedPacket("too_short")
    length = (data[2] << 8) | data[3]
    if length < HEADER_LENGTH:
        raise MalformedPacket("bad_length")
    if length > MAX_PACKET_LENGTH:
        raise MalformedPacket("too_long")
    if length > size:
        raise MalformedPacket("bad_length")
    code = _CODES.get(data[0])
    if code is None:
        raise MalformedPacket("unknown_code")
    attributes: list[Attribute] = []
    append = attributes.append
    pos = HEADER_LENGTH
    while pos < length:
        if pos + 2 > length:
            raise MalformedPacket("attribute_overflow")
        attr_length = data[pos + 1]
        if attr_length < 2:
            raise MalformedPacket("bad_attribute_length")
        end = pos + attr_length
        if end > length:
            raise MalformedPacket("attribute_overflow")
        append((data[pos], data[pos + 2 : end]))
        pos = end
    return RadiusPacket(code, data[1], data[4:20], tuple(attributes))


def hide_password(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """Hide a User-Password value with the shared secret (RFC 2865 §5.2).

    The password is padded with NULs to a multiple of 16 octets; each 16-octet block is XORed
    with MD5(secret + previous ciphertext block), the first with MD5(secret + Request
    Authenticator).

    Args:
        password: the clear-text password, 0 to 128 octets.
        secret: the shared secret.
        authenticator: the 16-octet Request Authenticator of the packet carrying it.

    Returns:
        The hidden value, 16 to 128 octets.

    Raises:
        ValueError: the password is over 128 octets or the authenticator is not 16 octets.
    """
    if len(password) > 128:
        raise ValueError("User-Password is limited to 128 octets (RFC 2865 §5.2)")
    if len(authenticator) != 16:
        raise ValueError("the Request Authenticator is 16 octets")
    clear = password + bytes(-len(password) % 16) if password else bytes(16)
    out = bytearray()
    last = authenticator
    for i in range(0, len(clear), 16):
        key = int.from_bytes(_md5(secret + last).digest(), "big")
        block = (int.from_bytes(clear[i : i + 16], "big") ^ key).to_bytes(16, "big")
        out += block
        last = block
    return bytes(out)


def unhide_password(hidden: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """Reveal a hidden User-Password value (RFC 2865 §5.2), dropping the NUL padding.

    A wrong secret yields garbage rather than an error: RFC 2865 gives no way to tell, which
    is why the Message-Authenticator is checked first.

    Args:
        hidden: the User-Password attribute value as received.
        secret: the shared secret.
        authenticator: the Request Authenticator of the packet that carried it.

    Returns:
        The clear-text password with trailing NUL octets removed.

    Raises:
        MalformedPacket: ``bad_password_length`` when the value is not 16 to 128 octets in
            multiples of 16 (RFC 2865 §5.2).
    """
    size = len(hidden)
    if size < 16 or size > 128 or size % 16:
        raise MalformedPacket("bad_password_length")
    out = bytearray()
    last = authenticator
    for i in range(0, size, 16):
        block = hidden[i : i + 16]
        key = int.from_bytes(_md5(secret + last).digest(), "big")
        out += (int.from_bytes(block, "big") ^ key).to_bytes(16, "big")
        last = block
    return bytes(out).rstrip(b"\x00")


def _encode_attributes(attributes: Sequence[Attribute]) -> bytes:
    """Serialise ``(type, value)`` pairs, refusing what RFC 2865 §5 cannot carry."""
    parts: list[bytes] = []
    for attr_type, value in attributes:
        size = len(value)
        if size > MAX_ATTRIBUTE_VALUE:
            raise ValueError(
                f"attribute {attr_type} value is {size} octets; at most 253 fit (RFC 2865 §5)"
            )
        if not 1 <= attr_type <= 255:
            raise ValueError(f"attribute type {attr_type} is outside 1-255")
        if attr_type == _MA:
            raise ValueError("Message-Authenticator is computed by the codec; do not pass it")
        parts.append(bytes((attr_type, size + 2)))
        parts.append(value)
    return b"".join(parts)


def _check_header(identifier: int, length: int) -> None:
    if not 0 <= identifier <= 255:
        raise ValueError(f"identifier {identifier} is outside 0-255")
    if length > MAX_PACKET_LENGTH:
        raise ValueError(f"packet would be {length} octets; RFC 2865 §3 allows 4096")


def encode_request(
    code: Code,
    identifier: int,
    authenticator: bytes,
    attributes: Sequence[Attribute],
    secret: bytes,
    *,
    message_authenticator: bool = True,
) -> bytes:
    """Encode a request: Access-Request, Status-Server or Accounting-Request.

    * Access-Request and Status-Server carry the random Request Authenticator given here
      (RFC 2865 §3, RFC 5997 §3).
    * Accounting-Request computes its Request Authenticator as MD5(Code + Identifier + Length +
      16 zero octets + Attributes + secret) (RFC 2866 §3); ``authenticator`` is ignored.
    * With ``message_authenticator`` (the default), Message-Authenticator is inserted as the
      first attribute: HMAC-MD5 keyed with the secret over the packet with the MA value zeroed
      (RFC 3579 §3.2), the authenticator field holding the Request Authenticator, or 16 zero
      octets for Accounting-Request (as RFC 5176 §3.3 does for CoA; FreeRADIUS and pyrad
      sign accounting the same way).

    Args:
        code: one of ``ACCESS_REQUEST``, ``STATUS_SERVER``, ``ACCOUNTING_REQUEST``.
        identifier: 0-255.
        authenticator: 16 random octets from :mod:`secrets` (ignored for accounting).
        attributes: ``(type, value)`` pairs in the order to send; a User-Password value must
            already be hidden with :func:`hide_password`.
        secret: the shared secret.
        message_authenticator: add Message-Authenticator first. Turn off only to talk to a
            peer that cannot parse it, or to test a server's policy.

    Returns:
        The datagram payload.

    Raises:
        ValueError: for another code, a bad identifier or authenticator, a value over 253
            octets, a Message-Authenticator among ``attributes`` or a packet over 4096 octets.
    """
    if code not in _REQUEST_CODES:
        raise ValueError(f"{code!r} is not a request code")
    body = _encode_attributes(attributes)
    if message_authenticator:
        body = _MA_PLACEHOLDER + body
    length = HEADER_LENGTH + len(body)
    _check_header(identifier, length)
    head = _pack_header(code, identifier, length)
    if code == Code.ACCOUNTING_REQUEST:
        if message_authenticator:
            mac = _hmac_digest(secret, head + _ZERO16 + body, "md5")
            body = body[:2] + mac + body[18:]
        authenticator = _md5(head + _ZERO16 + body + secret).digest()
        return head + authenticator + body
    if len(authenticator) != 16:
        raise ValueError("the Request Authenticator is 16 octets")
    if message_authenticator:
        mac = _hmac_digest(secret, head + authenticator + body, "md5")
        body = body[:2] + mac + body[18:]
    return head + authenticator + body


def encode_response(
    code: Code,
    identifier: int,
    request_authenticator: bytes,
    attributes: Sequence[Attribute],
    secret: bytes,
) -> bytes:
    """Encode a reply, always signed with Message-Authenticator as its first attribute.

    The order of operations is fixed by the RFCs: first Message-Authenticator = HMAC-MD5 over
    the reply with the *Request* Authenticator in the authenticator field and the MA value
    zeroed (RFC 3579 §3.2), then the Response Authenticator = MD5(Code + Identifier + Length +
    Request Authenticator + Attributes + secret) over the attributes including that MA
    (RFC 2865 §3).

    Args:
        code: ``ACCESS_ACCEPT``, ``ACCESS_REJECT``, ``ACCESS_CHALLENGE`` or
            ``ACCOUNTING_RESPONSE``.
        identifier: the request's identifier.
        request_authenticator: the request's 16-octet authenticator.
        attributes: reply attributes in order; Proxy-State echoing is the caller's job
            (RFC 2865 §5.33, done by :mod:`mfa_radius.radius.endpoint`).
        secret: the shared secret.

    Returns:
        The datagram payload.

    Raises:
        ValueError: for a request code, a bad identifier or authenticator, a value over 253
            octets, a Message-Authenticator among ``attributes`` or a packet over 4096 octets.
    """
    if code not in _RESPONSE_CODES:
        raise ValueError(f"{code!r} is not a response code")
    if len(request_authenticator) != 16:
        raise ValueError("the Request Authenticator is 16 octets")
    body = _MA_PLACEHOLDER + _encode_attributes(attributes)
    length = HEADER_LENGTH + len(body)
    _check_header(identifier, length)
    head = _pack_header(code, identifier, length)
    mac = _hmac_digest(secret, head + request_authenticator + body, "md5")
    body = body[:2] + mac + body[18:]
    response_authenticator = _md5(head + request_authenticator + body + secret).digest()
    return head + response_authenticator + body


def _find_message_authenticator(data: bytes, length: int) -> int | None:
    """Return the offset of the only Message-Authenticator, -1 if malformed, None if absent.

    "Malformed" covers a broken attribute walk, an MA whose length is not 18 (RFC 3579 §3.2)
    and a packet with more than one MA.
    """
    found: int | None = None
    pos = HEADER_LENGTH
    while pos + 2 <= length:
        attr_length = data[pos + 1]
        if attr_length < 2 or pos + attr_length > length:
            return -1
        if data[pos] == _MA:
            if attr_length != 18 or found is not None:
                return -1
            found = pos
        pos += attr_length
    if pos != length:
        return -1
    return found


def verify_message_authenticator(
    data: bytes, secret: bytes, request_authenticator: bytes | None = None
) -> bool | None:
    """Check the Message-Authenticator of a raw packet (RFC 3579 §3.2).

    The attribute is located by walking the raw bytes, so the check covers exactly what was
    received (re-encoding a decoded packet could reorder or re-pad it).

    Args:
        data: the datagram; octets after the Length field are ignored.
        secret: the shared secret.
        request_authenticator: ``None`` for a request (the authenticator field is used as
            received); for a response, the Request Authenticator of the request it answers,
            which RFC 3579 §3.2 puts in place of the Response Authenticator. Pass 16 zero
            octets for an Accounting-Request.

    Returns:
        ``None`` when the packet has no Message-Authenticator, ``True`` when it is valid,
        ``False`` when it is wrong, duplicated, of the wrong length, or the packet is
        malformed.
    """
    if len(data) < HEADER_LENGTH:
        return False
    length = (data[2] << 8) | data[3]
    if length < HEADER_LENGTH or length > len(data):
        return False
    pos = _find_message_authenticator(data, length)
    if pos is None:
        return None
    if pos < 0:
        return False
    received = data[pos + 2 : pos + 18]
    authenticator = data[4:20] if request_authenticator is None else request_authenticator
    signed = data[:4] + authenticator + data[20 : pos + 2] + _ZERO16 + data[pos + 18 : length]
    return hmac.compare_digest(_hmac_digest(secret, signed, "md5"), received)


def verify_response_authenticator(data: bytes, request_authenticator: bytes, secret: bytes) -> bool:
    """Check a reply's Response Authenticator (RFC 2865 §3, RFC 2866 §3).

    Args:
        data: the reply datagram; octets after the Length field are ignored.
        request_authenticator: the authenticator of the request it answers.
        secret: the shared secret.

    Returns:
        True when MD5(Code + Identifier + Length + Request Authenticator + Attributes + secret)
        equals the authenticator field.
    """
    if len(data) < HEADER_LENGTH:
        return False
    length = (data[2] << 8) | data[3]
    if length < HEADER_LENGTH or length > len(data):
        return False
    expected = _md5(data[:4] + request_authenticator + data[20:length] + secret).digest()
    return hmac.compare_digest(expected, data[4:20])


def encode_packet(packet: RadiusPacket, secret: bytes) -> bytes:
    """Re-encode a decoded packet, keeping its authenticator and attribute order.

    The packet's own Message-Authenticator, if any, is recomputed in place (not moved) over
    the authenticator field as it stands, so decoding and re-encoding a correctly signed
    Access-Request or Status-Server gives back the same bytes. Replies and Accounting-Requests,
    whose authenticators depend on other inputs, are only reproduced when unsigned. Meant for
    tests and tools; the server encodes replies with :func:`encode_response`.

    Args:
        packet: any packet, for example from :func:`decode`.
        secret: the shared secret used for Message-Authenticator.

    Returns:
        The datagram payload.

    Raises:
        ValueError: a value over 253 octets or a packet over 4096 octets.
    """
    parts: list[bytes] = []
    for attr_type, value in packet.attributes:
        if len(value) > MAX_ATTRIBUTE_VALUE:
            raise ValueError(f"attribute {attr_type} value exceeds 253 octets")
        parts.append(bytes((attr_type, len(value) + 2)))
        parts.append(value)
    body = b"".join(parts)
    length = HEADER_LENGTH + len(body)
    _check_header(packet.identifier, length)
    data = _pack_header(packet.code, packet.identifier, length) + packet.authenticator + body
    pos = _find_message_authenticator(data, length)
    if pos is None or pos < 0:
        return data
    zeroed = data[: pos + 2] + _ZERO16 + data[pos + 18 :]
    return data[: pos + 2] + _hmac_digest(secret, zeroed, "md5") + data[pos + 18 :]
