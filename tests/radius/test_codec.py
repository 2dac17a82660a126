"""Tests for mfa_radius.radius.codec: known answers, signing, password hiding, fuzzing."""

from __future__ import annotations

import hashlib
import hmac
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrad import packet as pyrad_packet
from pyrad.dictionary import Dictionary

import mfa_radius
from mfa_radius.errors import MalformedPacket
from mfa_radius.radius import codec
from mfa_radius.radius.packet import Attribute, AttrType, Code, RadiusPacket

SECRET = b"xyzzy5461"

# RFC 2865 §7.1: user "nemo", password "arctangent", NAS 192.168.1.16 port 3, secret xyzzy5461.
RFC2865_7_1_REQUEST = bytes.fromhex(
    "01000038 0f403f94 73978057 bd83d5cb 98f4227a 01066e65 6d6f0212 0dbe708d"
    "93d413ce 3196e43f 782a0aee 0406c0a8 01100506 00000003"
)
RFC2865_7_1_ACCEPT = bytes.fromhex(
    "02000026 86fe220e 7624ba2a 1005f6bf 9b55e0b2 06060000 00010f06 00000000 0e06c0a8 0103"
)
# RFC 2865 §7.2: user "flopsy" with CHAP, framed PPP.
RFC2865_7_2_REQUEST = bytes.fromhex(
    "01010047 2aee86f0 8d0d5596 9ca5978e 0d3367a2 0108666c 6f707379 031316e9"
    "7557c316 185895f2 93ff6344 07727504 06c0a801 10050600 00001406 06000000"
    "02070600 000001"
)
RFC2865_7_2_ACCEPT = bytes.fromhex(
    "02010038 15efbc7d ab26cfa3 dc34d9c0 3c8601a4 06060000 00020706 00000001"
    "0806ffff fffe0a06 00000002 0d060000 00010c06 000005dc"
)


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


class TestKnownAnswers:
    """RFC 2865 §7 example exchanges, byte for byte."""

    def test_decodes_rfc2865_7_1_access_request(self) -> None:
        """The §7.1 Access-Request decodes into its four attributes."""
        packet = codec.decode(RFC2865_7_1_REQUEST)
        assert packet.code is Code.ACCESS_REQUEST
        assert packet.identifier == 0
        assert packet.authenticator == _hex("0f403f9473978057bd83d5cb98f4227a")
        assert [t for t, _ in packet.attributes] == [1, 2, 4, 5]
        assert packet.get(AttrType.USER_NAME) == b"nemo"
        assert packet.get(AttrType.NAS_IP_ADDRESS) == bytes((192, 168, 1, 16))
        assert packet.get(AttrType.NAS_PORT) == (3).to_bytes(4, "big")

    def test_reveals_rfc2865_7_1_password(self) -> None:
        """The hidden User-Password of §7.1 is "arctangent" under secret xyzzy5461."""
        packet = codec.decode(RFC2865_7_1_REQUEST)
        hidden = packet.get(AttrType.USER_PASSWORD)
        assert hidden is not None
        assert codec.unhide_password(hidden, SECRET, packet.authenticator) == b"arctangent"

    def test_hides_rfc2865_7_1_password(self) -> None:
        """Hiding "arctangent" with the §7.1 authenticator yields the RFC's bytes."""
        packet = codec.decode(RFC2865_7_1_REQUEST)
        hidden = codec.hide_password(b"arctangent", SECRET, packet.authenticator)
        assert hidden == packet.get(AttrType.USER_PASSWORD)

    def test_encodes_rfc2865_7_1_request_without_message_authenticator(self) -> None:
        """encode_request without MA reproduces the §7.1 request exactly."""
        packet = codec.decode(RFC2865_7_1_REQUEST)
        data = codec.encode_request(
            Code.ACCESS_REQUEST,
            packet.identifier,
            packet.authenticator,
            packet.attributes,
            SECRET,
            message_authenticator=False,
        )
        assert data == RFC2865_7_1_REQUEST

    @pytest.mark.parametrize(
        ("request_bytes", "accept_bytes"),
        [
            (RFC2865_7_1_REQUEST, RFC2865_7_1_ACCEPT),
            (RFC2865_7_2_REQUEST, RFC2865_7_2_ACCEPT),
        ],
        ids=["7.1-telnet", "7.2-framed-chap"],
    )
    def test_verifies_rfc2865_response_authenticator(
        self, request_bytes: bytes, accept_bytes: bytes
    ) -> None:
        """The RFC's Access-Accept authenticators verify against their requests."""
        assert codec.verify_response_authenticator(accept_bytes, request_bytes[4:20], SECRET)
        assert not codec.verify_response_authenticator(accept_bytes, request_bytes[4:20], b"x")

    def test_decodes_rfc2865_7_2_exchange(self) -> None:
        """The §7.2 request carries CHAP and the accept carries six framed attributes."""
        request = codec.decode(RFC2865_7_2_REQUEST)
        assert request.identifier == 1
        assert request.get(AttrType.USER_NAME) == b"flopsy"
        assert request.get(AttrType.CHAP_PASSWORD) is not None
        accept = codec.decode(RFC2865_7_2_ACCEPT)
        assert accept.code is Code.ACCESS_ACCEPT
        assert [t for t, _ in accept.attributes] == [6, 7, 8, 10, 13, 12]
        assert accept.get(AttrType.FRAMED_IP_ADDRESS) == _hex("fffffffe")


class TestDecode:
    """Length checks of RFC 2865 §3 and §5, with their stable reason tokens."""

    @staticmethod
    def _packet(body: bytes, *, length: int | None = None, code: int = 1) -> bytes:
        size = 20 + len(body) if length is None else length
        return struct.pack("!BBH", code, 7, size) + bytes(16) + body

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"", "too_short"),
            (bytes(19), "too_short"),
            (struct.pack("!BBH", 1, 0, 19) + bytes(16), "bad_length"),
            (struct.pack("!BBH", 1, 0, 40) + bytes(16), "bad_length"),
            (struct.pack("!BBH", 1, 0, 4097) + bytes(4093), "too_long"),
            (struct.pack("!BBH", 99, 0, 20) + bytes(16), "unknown_code"),
            (struct.pack("!BBH", 1, 0, 22) + bytes(16) + b"\x01\x01", "bad_attribute_length"),
            (struct.pack("!BBH", 1, 0, 22) + bytes(16) + b"\x01\x00", "bad_attribute_length"),
            (struct.pack("!BBH", 1, 0, 23) + bytes(16) + b"\x01\x05a", "attribute_overflow"),
            (struct.pack("!BBH", 1, 0, 21) + bytes(16) + b"\x01", "attribute_overflow"),
        ],
        ids=[
            "empty",
            "19-octets",
            "length-under-20",
            "length-beyond-datagram",
            "length-over-4096",
            "unknown-code",
            "attribute-length-1",
            "attribute-length-0",
            "attribute-past-end",
            "dangling-octet",
        ],
    )
    def test_rejects_malformed_packet_with_reason(self, data: bytes, reason: str) -> None:
        """Each malformation raises MalformedPacket with its own token."""
        with pytest.raises(MalformedPacket) as info:
            codec.decode(data)
        assert info.value.reason == reason

    def test_ignores_octets_beyond_length_field(self) -> None:
        """Padding after Length is ignored (RFC 2865 §3)."""
        data = self._packet(b"\x01\x03a") + b"garbage"
        packet = codec.decode(data)
        assert packet.attributes == ((1, b"a"),)

    def test_accepts_empty_attribute_value(self) -> None:
        """An attribute of length 2 decodes to an empty value."""
        assert codec.decode(self._packet(b"\x12\x02")).attributes == ((18, b""),)

    def test_accepts_4096_octet_packet(self) -> None:
        """A packet of exactly the maximum length decodes."""
        body = b"".join(b"\x12\xff" + bytes(253) for _ in range(15)) + b"\x12\xfb" + bytes(249)
        data = self._packet(body)
        assert len(data) == 4096
        assert len(codec.decode(data).attributes) == 16

    def test_keeps_attribute_order_and_repeats(self) -> None:
        """Repeated attributes keep their wire order (RFC 2865 §5)."""
        packet = codec.decode(self._packet(b"\x21\x03a\x01\x03u\x21\x03b"))
        assert packet.get_all(AttrType.PROXY_STATE) == [b"a", b"b"]
        assert [t for t, _ in packet.attributes] == [33, 1, 33]


class TestPasswordHiding:
    """RFC 2865 §5.2 User-Password hiding."""

    @pytest.mark.parametrize("size", range(1, 129))
    def test_round_trips_every_password_length(self, size: int) -> None:
        """Hide then unhide returns the password for 1..128 octets, in 16-octet blocks."""
        password = bytes((33 + i % 90) for i in range(size))
        authenticator = bytes((size,)) * 16
        hidden = codec.hide_password(password, b"s3cret", authenticator)
        assert len(hidden) == max(16, -(-size // 16) * 16)
        assert codec.unhide_password(hidden, b"s3cret", authenticator) == password

    def test_hides_empty_password_as_one_block(self) -> None:
        """An empty password still takes one 16-octet block."""
        hidden = codec.hide_password(b"", b"s", bytes(16))
        assert len(hidden) == 16
        assert codec.unhide_password(hidden, b"s", bytes(16)) == b""

    def test_refuses_password_over_128_octets(self) -> None:
        """A 129-octet password is a programming error."""
        with pytest.raises(ValueError, match="128"):
            codec.hide_password(bytes(129), b"s", bytes(16))

    @pytest.mark.parametrize("size", [0, 15, 17, 144])
    def test_rejects_hidden_value_of_bad_length(self, size: int) -> None:
        """A hidden value that is not 16..128 in steps of 16 is malformed."""
        with pytest.raises(MalformedPacket) as info:
            codec.unhide_password(bytes(size), b"s", bytes(16))
        assert info.value.reason == "bad_password_length"

    def test_matches_pyrad_password_hiding(self) -> None:
        """pyrad's PwCrypt and our hide_password agree in both directions."""
        authenticator = bytes(range(16))
        request = pyrad_packet.AuthPacket(secret=b"s3cret", authenticator=authenticator)
        for password in (b"a", b"sixteen-octets!!", b"x" * 100):
            ours = codec.hide_password(password, b"s3cret", authenticator)
            assert request.PwCrypt(password) == ours
            assert request.PwDecrypt(ours).encode() == password


class TestMessageAuthenticator:
    """RFC 3579 §3.2 signing and verification."""

    def test_places_message_authenticator_first_in_request(self) -> None:
        """encode_request puts MA before every other attribute (BlastRADIUS)."""
        data = codec.encode_request(
            Code.ACCESS_REQUEST, 5, bytes(range(16)), [(1, b"bob")], b"secret"
        )
        packet = codec.decode(data)
        assert packet.attributes[0][0] == AttrType.MESSAGE_AUTHENTICATOR
        assert packet.attributes[1] == (1, b"bob")
        assert codec.verify_message_authenticator(data, b"secret") is True

    def test_computes_message_authenticator_as_rfc3579_says(self) -> None:
        """MA = HMAC-MD5(secret, packet with MA zeroed), independently recomputed."""
        data = codec.encode_request(
            Code.ACCESS_REQUEST, 9, bytes(range(16)), [(1, b"bob")], b"secret"
        )
        zeroed = data[:22] + bytes(16) + data[38:]
        assert data[22:38] == hmac.digest(b"secret", zeroed, "md5")

    def test_reports_absent_message_authenticator_as_none(self) -> None:
        """A packet without MA verifies to None, not False."""
        assert codec.verify_message_authenticator(RFC2865_7_1_REQUEST, SECRET) is None

    @pytest.mark.parametrize("offset", [0, 1, 3, 4, 19, 21, 25, 40, -1])
    def test_detects_tampered_byte(self, offset: int) -> None:
        """Flipping any covered octet (header, MA, other attributes) fails verification."""
        data = bytearray(
            codec.encode_request(
                Code.ACCESS_REQUEST, 5, bytes(range(16)), [(1, b"bob"), (18, b"x" * 8)], b"k"
            )
        )
        data[offset] ^= 0x01
        assert codec.verify_message_authenticator(bytes(data), b"k") is False

    def test_rejects_wrong_secret(self) -> None:
        """A packet signed with another secret does not verify."""
        data = codec.encode_request(Code.STATUS_SERVER, 1, bytes(16), (), b"right")
        assert codec.verify_message_authenticator(data, b"wrong") is False

    def test_rejects_two_message_authenticators(self) -> None:
        """A second MA attribute makes the packet fail verification."""
        data = codec.encode_request(Code.ACCESS_REQUEST, 1, bytes(16), [], b"k")
        doubled = data[20:]
        raw = struct.pack("!BBH", 1, 1, 20 + 2 * len(doubled)) + data[4:20] + doubled + doubled
        assert codec.verify_message_authenticator(raw, b"k") is False

    def test_rejects_message_authenticator_of_wrong_length(self) -> None:
        """An MA attribute whose length is not 18 fails verification."""
        raw = struct.pack("!BBH", 1, 1, 20 + 10) + bytes(16) + b"\x50\x0a" + bytes(8)
        assert codec.verify_message_authenticator(raw, b"k") is False

    def test_refuses_caller_supplied_message_authenticator(self) -> None:
        """The codec computes MA itself; passing one is a programming error."""
        with pytest.raises(ValueError, match="Message-Authenticator"):
            codec.encode_request(Code.ACCESS_REQUEST, 1, bytes(16), [(80, bytes(16))], b"k")


class TestEncodeResponse:
    """Replies: MA first with the Request Authenticator, then the Response Authenticator."""

    def test_signs_reply_with_request_authenticator(self) -> None:
        """Both authenticators of a reply verify against the request's authenticator."""
        request_auth = bytes(range(16, 32))
        data = codec.encode_response(
            Code.ACCESS_CHALLENGE, 42, request_auth, [(24, b"state"), (18, b"Code?")], b"k"
        )
        packet = codec.decode(data)
        assert packet.code is Code.ACCESS_CHALLENGE
        assert packet.identifier == 42
        assert packet.attributes[0][0] == AttrType.MESSAGE_AUTHENTICATOR
        assert packet.attributes[1:] == ((24, b"state"), (18, b"Code?"))
        assert codec.verify_response_authenticator(data, request_auth, b"k")
        assert codec.verify_message_authenticator(data, b"k", request_auth) is True
        assert codec.verify_message_authenticator(data, b"k", bytes(16)) is False

    def test_refuses_request_code(self) -> None:
        """encode_response only encodes response codes."""
        with pytest.raises(ValueError, match="response code"):
            codec.encode_response(Code.ACCESS_REQUEST, 1, bytes(16), (), b"k")

    def test_refuses_value_over_253_octets(self) -> None:
        """Splitting long values is the caller's job."""
        with pytest.raises(ValueError, match="253"):
            codec.encode_response(Code.ACCESS_REJECT, 1, bytes(16), [(18, bytes(254))], b"k")

    def test_accepts_value_of_253_octets(self) -> None:
        """A 253-octet value is the largest that fits and is accepted."""
        data = codec.encode_response(Code.ACCESS_REJECT, 1, bytes(16), [(18, bytes(253))], b"k")
        assert codec.decode(data).get(18) == bytes(253)

    def test_refuses_packet_over_4096_octets(self) -> None:
        """A reply longer than RFC 2865 §3 allows is refused."""
        with pytest.raises(ValueError, match="4096"):
            codec.encode_response(Code.ACCESS_ACCEPT, 1, bytes(16), [(18, bytes(253))] * 16, b"k")

    def test_refuses_bad_identifier(self) -> None:
        """Identifiers are one octet."""
        with pytest.raises(ValueError, match="identifier"):
            codec.encode_response(Code.ACCESS_ACCEPT, 256, bytes(16), (), b"k")


class TestAccountingRequest:
    """RFC 2866 §3 Request Authenticator for Accounting-Request."""

    def test_computes_accounting_request_authenticator(self) -> None:
        """The authenticator is MD5 over the packet with a zero authenticator plus secret."""
        data = codec.encode_request(
            Code.ACCOUNTING_REQUEST, 3, b"", [(40, (1).to_bytes(4, "big"))], b"k"
        )
        # RFC 2866 §3 fixes MD5 here; the test recomputes it independently.
        expected = hashlib.md5(data[:4] + bytes(16) + data[20:] + b"k").digest()  # noqa: S324
        assert data[4:20] == expected
        assert codec.verify_message_authenticator(data, b"k", bytes(16)) is True


DICTIONARY = Path(mfa_radius.__file__).parent / "dictionaries" / "dictionary"


def _pyrad_dictionary() -> Dictionary:
    return Dictionary(str(DICTIONARY))


class TestPyradInterop:
    """Our bytes decode and verify in pyrad, and pyrad's in ours."""

    AUTH = bytes(range(100, 116))

    def test_pyrad_accepts_our_access_request(self) -> None:
        """pyrad decodes our request, reveals the password and verifies our MA."""
        data = codec.encode_request(
            Code.ACCESS_REQUEST,
            77,
            self.AUTH,
            [
                (1, b"alice"),
                (2, codec.hide_password(b"correct horse", b"k", self.AUTH)),
                (32, b"vpn-gw"),
            ],
            b"k",
        )
        theirs = pyrad_packet.AuthPacket(packet=data, secret=b"k", dict=_pyrad_dictionary())
        assert theirs.id == 77
        assert theirs["User-Name"] == ["alice"]
        assert theirs.PwDecrypt(theirs["User-Password"][0]) == "correct horse"
        assert theirs.message_authenticator
        assert theirs.verify_message_authenticator()

    def test_we_accept_pyrad_access_request(self) -> None:
        """We decode pyrad's request, reveal its password and verify its MA."""
        theirs = pyrad_packet.AuthPacket(
            id=12, secret=b"k", authenticator=self.AUTH, dict=_pyrad_dictionary()
        )
        theirs["User-Name"] = "bob"
        theirs["User-Password"] = theirs.PwCrypt("hunter2")
        theirs["NAS-Identifier"] = "gw1"
        theirs.add_message_authenticator()
        data = theirs.RequestPacket()
        ours = codec.decode(data)
        assert ours.identifier == 12
        assert ours.get(AttrType.USER_NAME) == b"bob"
        hidden = ours.get(AttrType.USER_PASSWORD)
        assert hidden is not None
        assert codec.unhide_password(hidden, b"k", ours.authenticator) == b"hunter2"
        assert codec.verify_message_authenticator(data, b"k") is True

    def test_pyrad_accepts_our_reply(self) -> None:
        """pyrad's VerifyReply (authenticator, MA, Proxy-State) accepts our Access-Accept."""
        request = pyrad_packet.AuthPacket(
            id=5, secret=b"k", authenticator=self.AUTH, dict=_pyrad_dictionary()
        )
        request["User-Name"] = "bob"
        request["Proxy-State"] = [b"p1", b"p2"]
        request.add_message_authenticator()
        request.RequestPacket()
        data = codec.encode_response(
            Code.ACCESS_ACCEPT,
            5,
            self.AUTH,
            [(11, b"vpn-users"), (33, b"p1"), (33, b"p2")],
            b"k",
        )
        reply = request.CreateReply(packet=data)
        assert request.VerifyReply(reply, data, enforce_ma=True)
        assert reply["Filter-Id"] == ["vpn-users"]

    def test_we_accept_pyrad_reply(self) -> None:
        """pyrad's signed reply verifies with our response and MA checks."""
        request = pyrad_packet.AuthPacket(
            id=6, secret=b"k", authenticator=self.AUTH, dict=_pyrad_dictionary()
        )
        request["User-Name"] = "bob"
        reply = request.CreateReply()
        reply.code = pyrad_packet.AccessReject
        reply["Reply-Message"] = "no"
        data = reply.ReplyPacket()
        assert codec.verify_response_authenticator(data, self.AUTH, b"k")
        assert codec.verify_message_authenticator(data, b"k", self.AUTH) is True
        packet = codec.decode(data)
        assert packet.code is Code.ACCESS_REJECT
        assert packet.attributes[0][0] == AttrType.MESSAGE_AUTHENTICATOR
        assert packet.get(AttrType.REPLY_MESSAGE) == b"no"


DECODE_REASONS = frozenset(
    {
        "too_short",
        "too_long",
        "bad_length",
        "unknown_code",
        "bad_attribute_length",
        "attribute_overflow",
    }
)
_values = st.binary(min_size=0, max_size=253)
_attributes = st.lists(
    st.tuples(st.integers(1, 255).filter(lambda t: t != 80), _values), max_size=12
)


class TestProperties:
    """Hypothesis: garbage in gives a packet or MalformedPacket; well-formed round-trips."""

    @given(st.binary(max_size=600))
    def test_decode_returns_packet_or_raises_malformed(self, data: bytes) -> None:
        """Arbitrary bytes never raise anything but MalformedPacket."""
        try:
            packet = codec.decode(data)
        except MalformedPacket as exc:
            reason = exc.reason
        else:
            assert isinstance(packet, RadiusPacket)
            return
        assert reason in DECODE_REASONS

    @given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=400))
    def test_decode_survives_random_attributes(self, code: int, ident: int, body: bytes) -> None:
        """A consistent Length with random attribute octets gives a packet or the error."""
        data = struct.pack("!BBH", code, ident, 20 + len(body)) + bytes(16) + body
        try:
            packet = codec.decode(data)
        except MalformedPacket:
            return
        assert sum(len(v) + 2 for _, v in packet.attributes) == len(body)

    @given(
        st.sampled_from([Code.ACCESS_REQUEST, Code.ACCESS_ACCEPT, Code.ACCESS_CHALLENGE]),
        st.integers(0, 255),
        st.binary(min_size=16, max_size=16),
        _attributes,
    )
    def test_encode_of_decode_round_trips(
        self, code: Code, identifier: int, authenticator: bytes, attributes: list[Attribute]
    ) -> None:
        """A well-formed packet decodes and re-encodes to the same bytes."""
        body = b"".join(bytes((t, len(v) + 2)) + v for t, v in attributes)
        if 20 + len(body) > codec.MAX_PACKET_LENGTH:
            return
        data = struct.pack("!BBH", code, identifier, 20 + len(body)) + authenticator + body
        packet = codec.decode(data)
        assert packet.attributes == tuple(attributes)
        assert codec.encode_packet(packet, b"k") == data

    @given(st.integers(0, 255), st.binary(min_size=16, max_size=16), _attributes)
    def test_signed_request_round_trips(
        self, identifier: int, authenticator: bytes, attributes: list[Attribute]
    ) -> None:
        """encode_request -> decode -> encode_packet gives the same signed bytes."""
        try:
            data = codec.encode_request(
                Code.ACCESS_REQUEST, identifier, authenticator, attributes, b"k"
            )
        except ValueError:
            return
        packet = codec.decode(data)
        assert packet.attributes[1:] == tuple(attributes)
        assert codec.encode_packet(packet, b"k") == data
        assert codec.verify_message_authenticator(data, b"k") is True
