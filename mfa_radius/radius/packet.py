"""Typed RADIUS packets: code, identifier, authenticator and the ordered attribute list.

This module holds values only. Turning bytes into packets and back is ``codec.py``'s job.
Attributes are kept as ``(type, raw value)`` pairs in wire order (RFC 2865 §5: the order of
attributes of the same type must be preserved, and Proxy-State is echoed in order, §5.33).
Vendor-Specific attributes (type 26) stay raw; their inner layout is the vendor's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

Attribute = tuple[int, bytes]
"""One attribute on the wire: its type number and its raw value (1-253 bytes)."""


class Code(IntEnum):
    """RADIUS packet codes (RFC 2865 §3, RFC 2866 §4, RFC 5997 §2)."""

    ACCESS_REQUEST = 1  #: RFC 2865 §4.1
    ACCESS_ACCEPT = 2  #: RFC 2865 §4.2
    ACCESS_REJECT = 3  #: RFC 2865 §4.3
    ACCOUNTING_REQUEST = 4  #: RFC 2866 §4.1
    ACCOUNTING_RESPONSE = 5  #: RFC 2866 §4.2
    ACCESS_CHALLENGE = 11  #: RFC 2865 §4.4
    STATUS_SERVER = 12  #: RFC 5997
    STATUS_CLIENT = 13  #: RFC 5997 (reserved)


class AttrType(IntEnum):
    """The attribute types this program reads or writes by number (RFC 2865 §5, RFC 2869 §5)."""

    USER_NAME = 1  #: RFC 2865 §5.1
    USER_PASSWORD = 2  #: RFC 2865 §5.2
    CHAP_PASSWORD = 3  #: RFC 2865 §5.3
    NAS_IP_ADDRESS = 4  #: RFC 2865 §5.4
    NAS_PORT = 5  #: RFC 2865 §5.5
    SERVICE_TYPE = 6  #: RFC 2865 §5.6
    FRAMED_IP_ADDRESS = 8  #: RFC 2865 §5.8
    FILTER_ID = 11  #: RFC 2865 §5.11
    REPLY_MESSAGE = 18  #: RFC 2865 §5.18
    STATE = 24  #: RFC 2865 §5.24
    CLASS = 25  #: RFC 2865 §5.25
    VENDOR_SPECIFIC = 26  #: RFC 2865 §5.26
    SESSION_TIMEOUT = 27  #: RFC 2865 §5.27
    CALLED_STATION_ID = 30  #: RFC 2865 §5.30
    CALLING_STATION_ID = 31  #: RFC 2865 §5.31
    NAS_IDENTIFIER = 32  #: RFC 2865 §5.32
    PROXY_STATE = 33  #: RFC 2865 §5.33
    NAS_PORT_TYPE = 61  #: RFC 2865 §5.41
    EAP_MESSAGE = 79  #: RFC 3579 §3.1
    MESSAGE_AUTHENTICATOR = 80  #: RFC 3579 §3.2 (first defined in RFC 2869 §5.14)
    NAS_IPV6_ADDRESS = 95  #: RFC 3162 §2.1


@dataclass(frozen=True, slots=True)
class RadiusPacket:
    """A decoded RADIUS packet (RFC 2865 §3).

    Attributes:
        code: the packet type.
        identifier: 0-255, matches requests to replies.
        authenticator: the 16-byte Request or Response Authenticator.
        attributes: ``(type, raw value)`` pairs in wire order. User-Password stays hidden here;
            ``codec.unhide_password`` reveals it with the shared secret.
    """

    code: Code
    identifier: int
    authenticator: bytes
    attributes: tuple[Attribute, ...] = ()

    def get(self, attr_type: int) -> bytes | None:
        """Return the first value of ``attr_type``, or None when absent."""
        for t, value in self.attributes:
            if t == attr_type:
                return value
        return None

    def get_all(self, attr_type: int) -> list[bytes]:
        """Return every value of ``attr_type`` in wire order."""
        return [value for t, value in self.attributes if t == attr_type]

    def has(self, attr_type: int) -> bool:
        """Say whether at least one attribute of ``attr_type`` is present."""
        return any(t == attr_type for t, _ in self.attributes)

    def get_text(self, attr_type: int) -> str | None:
        """Return the first value of a text attribute decoded as UTF-8 (invalid bytes replaced)."""
        value = self.get(attr_type)
        return None if value is None else value.decode("utf-8", errors="replace")
