"""Tests for mfa_radius.radius.endpoint: bytes in, decisions out, on explicit time."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from mfa_radius.radius import codec
from mfa_radius.radius.clients import Client, ClientTable, MaPolicy, ProxyStatePolicy
from mfa_radius.radius.endpoint import (
    Drop,
    Endpoint,
    NewRequest,
    RequestKey,
    Respond,
    attributes_octets,
    reply_overhead,
)
from mfa_radius.radius.packet import Attribute, AttrType, Code

SECRET = b"gw-secret"
T0 = 1_700_000_000.0
SRC = ("192.0.2.10", 40000)


def _table(
    ma: MaPolicy = MaPolicy.YES, proxy_state: ProxyStatePolicy = ProxyStatePolicy.AUTO
) -> ClientTable:
    return ClientTable(
        [
            Client(
                "gw",
                (ipaddress.ip_network("192.0.2.0/24"),),
                SECRET,
                require_message_authenticator=ma,
                limit_proxy_state=proxy_state,
            )
        ]
    )


def _endpoint(
    ma: MaPolicy = MaPolicy.YES,
    proxy_state: ProxyStatePolicy = ProxyStatePolicy.AUTO,
    **kwargs: float,
) -> Endpoint:
    reply_ttl = kwargs.get("reply_ttl", 30.0)
    max_entries = int(kwargs.get("max_entries", 1000))
    return Endpoint(_table(ma, proxy_state), reply_ttl=reply_ttl, max_entries=max_entries)


def _request(
    identifier: int = 1,
    authenticator: bytes = bytes(range(16)),
    *,
    password: bytes | None = b"hunter2",
    extra: Sequence[Attribute] = (),
    ma: bool = True,
    secret: bytes = SECRET,
) -> bytes:
    attrs: list[Attribute] = [(AttrType.USER_NAME, b"alice"), *extra]
    if password is not None:
        attrs.append((AttrType.USER_PASSWORD, codec.hide_password(password, secret, authenticator)))
    return codec.encode_request(
        Code.ACCESS_REQUEST, identifier, authenticator, attrs, secret, message_authenticator=ma
    )


def _new(event: object) -> NewRequest:
    assert isinstance(event, NewRequest), event
    return event


def _dropped(event: object, reason: str) -> None:
    assert isinstance(event, Drop), event
    assert event.reason == reason


class TestNewRequest:
    """A valid Access-Request becomes a NewRequest."""

    def test_reveals_password_and_keys_request(self) -> None:
        """The password is revealed with the client secret and the RFC 5080 key is filled."""
        endpoint = _endpoint()
        request = _new(endpoint.receive(_request(7), SRC, T0))
        assert request.password == b"hunter2"
        assert request.client.name == "gw"
        assert request.key == RequestKey("gw", "192.0.2.10", 40000, 7, bytes(range(16)))
        assert request.packet.get(AttrType.USER_NAME) == b"alice"

    def test_password_is_none_without_user_password(self) -> None:
        """A request without User-Password (CHAP, State-only) has password None."""
        request = _new(_endpoint().receive(_request(password=None), SRC, T0))
        assert request.password is None

    def test_repr_hides_password(self) -> None:
        """The revealed password never shows in repr."""
        request = _new(_endpoint().receive(_request(), SRC, T0))
        assert "hunter2" not in repr(request)

    def test_store_key_is_stable_and_distinct(self) -> None:
        """store_key is a SHA-256 hex that changes with every field."""
        key = RequestKey("gw", "192.0.2.10", 40000, 7, bytes(16))
        assert key.store_key() == RequestKey("gw", "192.0.2.10", 40000, 7, bytes(16)).store_key()
        assert len(key.store_key()) == 64
        others = [
            RequestKey("gw2", "192.0.2.10", 40000, 7, bytes(16)),
            RequestKey("gw", "192.0.2.11", 40000, 7, bytes(16)),
            RequestKey("gw", "192.0.2.10", 40001, 7, bytes(16)),
            RequestKey("gw", "192.0.2.10", 40000, 8, bytes(16)),
            RequestKey("gw", "192.0.2.10", 40000, 7, b"\x01" + bytes(15)),
        ]
        assert len({key.store_key(), *(k.store_key() for k in others)}) == 6


class TestDrops:
    """Datagrams that get no answer."""

    def test_drops_unknown_client(self) -> None:
        """A source outside every client network is dropped and counted."""
        endpoint = _endpoint()
        _dropped(endpoint.receive(_request(), ("198.51.100.1", 1812), T0), "unknown_client")
        assert endpoint.counters["unknown_client"] == 1

    @pytest.mark.parametrize(
        "code", [Code.ACCOUNTING_REQUEST, Code.ACCESS_ACCEPT, Code.STATUS_CLIENT, 99]
    )
    def test_drops_unexpected_code(self, code: int) -> None:
        """Only Access-Request and Status-Server are served on this port."""
        data = bytes((code,)) + _request()[1:]
        _dropped(_endpoint().receive(data, SRC, T0), "unexpected_code")

    @pytest.mark.parametrize(
        ("data", "detail"),
        [
            (b"\x01\x00", "too_short"),
            (b"\x01\x00\x00\x30" + bytes(16), "bad_length"),
            (b"\x01\x00\x00\x16" + bytes(16) + b"\x01\x01", "bad_attribute_length"),
        ],
    )
    def test_drops_malformed_with_detail(self, data: bytes, detail: str) -> None:
        """Undecodable packets are dropped as malformed, with the codec's token as detail."""
        event = _endpoint(MaPolicy.NO).receive(data, SRC, T0)
        assert event == Drop("malformed", detail)

    def test_drops_bad_password_length(self) -> None:
        """A User-Password that is not a multiple of 16 octets is malformed."""
        data = codec.encode_request(
            Code.ACCESS_REQUEST, 1, bytes(16), [(AttrType.USER_PASSWORD, b"short")], SECRET
        )
        assert _endpoint().receive(data, SRC, T0) == Drop("malformed", "bad_password_length")

    def test_counters_are_read_only(self) -> None:
        """The shell may read the counters but not change them."""
        endpoint = _endpoint()
        endpoint.receive(_request(), ("198.51.100.1", 1), T0)
        with pytest.raises(TypeError):
            endpoint.counters["unknown_client"] = 0  # type: ignore[index]


class TestMessageAuthenticatorPolicy:
    """require_message_authenticator = yes / no / auto (FreeRADIUS 3.2.5)."""

    @pytest.mark.parametrize("policy", list(MaPolicy))
    def test_drops_bad_message_authenticator_under_every_policy(self, policy: MaPolicy) -> None:
        """A present but wrong MA is always fatal."""
        data = _request(secret=b"other-secret")
        _dropped(_endpoint(policy).receive(data, SRC, T0), "bad_message_authenticator")

    def test_drops_tampered_packet(self) -> None:
        """Changing one octet after signing breaks the MA."""
        data = bytearray(_request())
        data[-1] ^= 0xFF
        _dropped(_endpoint().receive(bytes(data), SRC, T0), "bad_message_authenticator")

    def test_yes_drops_request_without_message_authenticator(self) -> None:
        """With yes, a request without MA is dropped."""
        endpoint = _endpoint(MaPolicy.YES)
        _dropped(endpoint.receive(_request(ma=False), SRC, T0), "missing_message_authenticator")
        assert endpoint.counters == {"missing_message_authenticator": 1}

    def test_no_accepts_request_without_message_authenticator(self) -> None:
        """With no, requests without MA keep being accepted, even after one with MA."""
        endpoint = _endpoint(MaPolicy.NO)
        _new(endpoint.receive(_request(1), SRC, T0))
        _new(endpoint.receive(_request(2, ma=False), SRC, T0))

    def test_auto_accepts_until_client_sends_message_authenticator(self) -> None:
        """With auto, MA becomes mandatory once the client has sent a valid one."""
        endpoint = _endpoint(MaPolicy.AUTO)
        _new(endpoint.receive(_request(1, ma=False), SRC, T0))
        _new(endpoint.receive(_request(2, ma=False), SRC, T0))
        _new(endpoint.receive(_request(3, ma=True), SRC, T0))
        _dropped(endpoint.receive(_request(4, ma=False), SRC, T0), "missing_message_authenticator")

    def test_auto_does_not_learn_from_bad_message_authenticator(self) -> None:
        """A forged MA does not switch the requirement on (that would be a cheap DoS)."""
        endpoint = _endpoint(MaPolicy.AUTO)
        endpoint.receive(_request(1, secret=b"forged"), SRC, T0)
        _new(endpoint.receive(_request(2, ma=False), SRC, T0))

    def test_auto_does_not_learn_from_eap_request(self) -> None:
        """MA next to EAP-Message says nothing about the NAS's PAP requests."""
        endpoint = _endpoint(MaPolicy.AUTO)
        _new(
            endpoint.receive(
                _request(1, extra=[(AttrType.EAP_MESSAGE, b"\x02\x01\x00\x04")]), SRC, T0
            )
        )
        _new(endpoint.receive(_request(2, ma=False), SRC, T0))

    def test_auto_learning_is_per_client(self) -> None:
        """One client's MA does not make it mandatory for another."""
        table = ClientTable(
            [
                Client("a", (ipaddress.ip_network("192.0.2.1/32"),), SECRET),
                Client("b", (ipaddress.ip_network("192.0.2.2/32"),), SECRET),
            ]
        )
        endpoint = Endpoint(table)
        _new(endpoint.receive(_request(1), ("192.0.2.1", 1), T0))
        _new(endpoint.receive(_request(1, ma=False), ("192.0.2.2", 1), T0))

    def test_drops_eap_without_message_authenticator(self) -> None:
        """RFC 3579 §3.2: EAP-Message without MA is discarded even when MA is optional."""
        data = _request(extra=[(AttrType.EAP_MESSAGE, b"\x02\x01\x00\x04")], ma=False)
        _dropped(_endpoint(MaPolicy.NO).receive(data, SRC, T0), "eap_without_message_authenticator")


class TestLimitProxyState:
    """limit_proxy_state = yes / no / auto (FreeRADIUS 3.2.5), with MA optional."""

    PS: Sequence[Attribute] = [(AttrType.PROXY_STATE, b"hop1")]

    def test_yes_drops_proxy_state_without_message_authenticator(self) -> None:
        """With yes, Proxy-State needs MA."""
        endpoint = _endpoint(MaPolicy.NO, ProxyStatePolicy.YES)
        _dropped(
            endpoint.receive(_request(extra=self.PS, ma=False), SRC, T0),
            "proxy_state_without_message_authenticator",
        )

    def test_yes_accepts_proxy_state_with_message_authenticator(self) -> None:
        """With yes, Proxy-State alongside a valid MA is fine."""
        endpoint = _endpoint(MaPolicy.NO, ProxyStatePolicy.YES)
        _new(endpoint.receive(_request(extra=self.PS), SRC, T0))

    def test_yes_accepts_request_without_proxy_state(self) -> None:
        """With yes, a request without Proxy-State needs no MA (that is the MA policy's job)."""
        endpoint = _endpoint(MaPolicy.NO, ProxyStatePolicy.YES)
        _new(endpoint.receive(_request(ma=False), SRC, T0))

    def test_no_accepts_proxy_state_without_message_authenticator(self) -> None:
        """With no, Proxy-State without MA is accepted."""
        endpoint = _endpoint(MaPolicy.NO, ProxyStatePolicy.NO)
        _new(endpoint.receive(_request(1, ma=False), SRC, T0))
        _new(endpoint.receive(_request(2, extra=self.PS, ma=False), SRC, T0))

    def test_auto_limits_after_first_packet_without_proxy_state(self) -> None:
        """auto: a first request without Proxy-State marks a NAS; later Proxy-State needs MA."""
        endpoint = _endpoint(MaPolicy.NO, ProxyStatePolicy.AUTO)
        _new(endpoint.receive(_request(1, ma=False), SRC, T0))
        _dropped(
            endpoint.receive(_request(2, extra=self.PS, ma=False), SRC, T0),
            "proxy_state_without_message_authenticator",
        )
        _new(endpoint.receive(_request(3, extra=self.PS), SRC, T0))

    def test_auto_allows_proxy_when_first_packet_has_proxy_state(self) -> None:
        """auto: a first request with Proxy-State marks a proxy; the limit stays off."""
        endpoint = _endpoint(MaPolicy.NO, ProxyStatePolicy.AUTO)
        _new(endpoint.receive(_request(1, extra=self.PS, ma=False), SRC, T0))
        _new(endpoint.receive(_request(2, ma=False), SRC, T0))
        _new(endpoint.receive(_request(3, extra=self.PS, ma=False), SRC, T0))

    def test_auto_judges_first_packet_even_when_it_is_signed(self) -> None:
        """auto with MA optional learns from the first request whether or not it has MA."""
        endpoint = _endpoint(MaPolicy.NO, ProxyStatePolicy.AUTO)
        _new(endpoint.receive(_request(1), SRC, T0))
        _dropped(
            endpoint.receive(_request(2, extra=self.PS, ma=False), SRC, T0),
            "proxy_state_without_message_authenticator",
        )

    def test_is_moot_when_message_authenticator_required(self) -> None:
        """With MA required, the MA check drops the request first."""
        endpoint = _endpoint(MaPolicy.YES, ProxyStatePolicy.NO)
        _dropped(
            endpoint.receive(_request(extra=self.PS, ma=False), SRC, T0),
            "missing_message_authenticator",
        )


class TestReply:
    """Replies: MA first, Proxy-State echoed, authenticators valid."""

    def test_reply_verifies_and_has_message_authenticator_first(self) -> None:
        """The reply's Response Authenticator and MA both verify; MA is the first attribute."""
        endpoint = _endpoint()
        request = _new(endpoint.receive(_request(9), SRC, T0))
        data = endpoint.reply(request, Code.ACCESS_ACCEPT, [(AttrType.FILTER_ID, b"vpn")], T0)
        auth = request.packet.authenticator
        assert codec.verify_response_authenticator(data, auth, SECRET)
        assert codec.verify_message_authenticator(data, SECRET, auth) is True
        packet = codec.decode(data)
        assert packet.code is Code.ACCESS_ACCEPT
        assert packet.identifier == 9
        assert packet.attributes[0][0] == AttrType.MESSAGE_AUTHENTICATOR
        assert packet.attributes[1:] == ((AttrType.FILTER_ID, b"vpn"),)

    @pytest.mark.parametrize(
        "code", [Code.ACCESS_ACCEPT, Code.ACCESS_REJECT, Code.ACCESS_CHALLENGE]
    )
    def test_every_reply_code_starts_with_message_authenticator(self, code: Code) -> None:
        """Accept, Reject and Challenge all carry MA first."""
        endpoint = _endpoint()
        request = _new(endpoint.receive(_request(), SRC, T0))
        packet = codec.decode(endpoint.reply(request, code, [], T0))
        assert packet.attributes[0][0] == AttrType.MESSAGE_AUTHENTICATOR

    def test_echoes_proxy_state_in_order_at_end(self) -> None:
        """RFC 2865 §5.33: every Proxy-State comes back unmodified and in order."""
        endpoint = _endpoint()
        extra = [
            (AttrType.PROXY_STATE, b"first"),
            (AttrType.NAS_IDENTIFIER, b"gw"),
            (AttrType.PROXY_STATE, b"second"),
        ]
        request = _new(endpoint.receive(_request(extra=extra), SRC, T0))
        data = endpoint.reply(request, Code.ACCESS_REJECT, [(AttrType.REPLY_MESSAGE, b"no")], T0)
        attrs = codec.decode(data).attributes
        assert attrs[1:] == (
            (AttrType.REPLY_MESSAGE, b"no"),
            (AttrType.PROXY_STATE, b"first"),
            (AttrType.PROXY_STATE, b"second"),
        )

    def test_refuses_non_access_reply_code(self) -> None:
        """Only Accept, Reject and Challenge answer an Access-Request."""
        endpoint = _endpoint()
        request = _new(endpoint.receive(_request(), SRC, T0))
        with pytest.raises(ValueError, match="answer"):
            endpoint.reply(request, Code.ACCOUNTING_RESPONSE, [], T0)


class TestReplySize:
    """The fixed part of a reply, known from the request, predicts the codec's 4096 limit."""

    def test_overhead_is_header_and_message_authenticator_without_proxy_state(self) -> None:
        """A reply to a request without Proxy-State takes 20 + 18 octets besides its attributes."""
        endpoint = _endpoint()
        request = _new(endpoint.receive(_request(), SRC, T0))
        assert reply_overhead(request) == 38

    def test_overhead_counts_each_echoed_proxy_state_with_its_header(self) -> None:
        """Every Proxy-State adds its value and two octets; other attributes add nothing."""
        endpoint = _endpoint()
        extra = [
            (AttrType.PROXY_STATE, b"a" * 253),
            (AttrType.NAS_IDENTIFIER, b"gw" * 50),
            (AttrType.PROXY_STATE, b"b"),
        ]
        request = _new(endpoint.receive(_request(extra=extra), SRC, T0))
        assert reply_overhead(request) == 38 + 255 + 3

    def test_attributes_octets_counts_each_value_with_its_header(self) -> None:
        """Attributes take their values plus two octets each; none take nothing."""
        assert attributes_octets([]) == 0
        assert (
            attributes_octets([(AttrType.REPLY_MESSAGE, b"x" * 253), (AttrType.STATE, b"s")]) == 258
        )

    @pytest.mark.parametrize(("excess", "fits"), [(0, True), (1, False)], ids=["4096", "4097"])
    def test_overhead_and_attributes_predict_whether_the_reply_encodes(
        self, excess: int, fits: bool
    ) -> None:
        """Overhead + attributes == 4096 encodes; one octet more is refused by the codec."""
        endpoint = _endpoint()
        extra = [(AttrType.PROXY_STATE, bytes([i]) * 253) for i in range(12)]
        request = _new(endpoint.receive(_request(extra=extra), SRC, T0))
        room = codec.MAX_PACKET_LENGTH - reply_overhead(request) + excess
        attributes: list[Attribute] = []
        while room - attributes_octets(attributes) > 255:
            attributes.append((AttrType.CLASS, b"c" * 253))
        attributes.append((AttrType.CLASS, b"d" * (room - attributes_octets(attributes) - 2)))
        assert reply_overhead(request) + attributes_octets(attributes) == 4096 + excess
        if fits:
            data = endpoint.reply(request, Code.ACCESS_ACCEPT, attributes, T0)
            assert len(data) == 4096
        else:
            with pytest.raises(ValueError, match="4096"):
                endpoint.reply(request, Code.ACCESS_ACCEPT, attributes, T0)


class TestDuplicates:
    """RFC 5080 §2.2.2 duplicate detection and the reply cache."""

    def test_drops_duplicate_while_in_progress(self) -> None:
        """A retransmission before the reply is dropped, so work is never started twice."""
        endpoint = _endpoint()
        data = _request()
        _new(endpoint.receive(data, SRC, T0))
        _dropped(endpoint.receive(data, SRC, T0 + 1), "duplicate_in_progress")

    def test_resends_cached_reply_byte_for_byte(self) -> None:
        """A retransmission after the reply gets exactly the same bytes."""
        endpoint = _endpoint()
        data = _request()
        request = _new(endpoint.receive(data, SRC, T0))
        reply = endpoint.reply(request, Code.ACCESS_CHALLENGE, [(AttrType.STATE, b"s")], T0 + 1)
        assert endpoint.receive(data, SRC, T0 + 2) == Respond(reply, "duplicate")

    def test_processes_retransmission_anew_after_expiry(self) -> None:
        """Once reply_ttl has passed, the same bytes are a new request."""
        endpoint = _endpoint(reply_ttl=5.0)
        data = _request()
        request = _new(endpoint.receive(data, SRC, T0))
        endpoint.reply(request, Code.ACCESS_REJECT, [], T0 + 1)
        endpoint.expire(T0 + 5.9)
        assert isinstance(endpoint.receive(data, SRC, T0 + 5.9), Respond)
        endpoint.expire(T0 + 6.0)
        _new(endpoint.receive(data, SRC, T0 + 6.0))

    def test_same_identifier_new_authenticator_is_new_request(self) -> None:
        """A reused Identifier with a fresh authenticator is not a duplicate."""
        endpoint = _endpoint()
        _new(endpoint.receive(_request(5, bytes(16)), SRC, T0))
        _new(endpoint.receive(_request(5, b"\x01" * 16), SRC, T0))

    def test_same_packet_from_other_port_is_new_request(self) -> None:
        """The source port is part of the key."""
        endpoint = _endpoint()
        data = _request()
        _new(endpoint.receive(data, SRC, T0))
        _new(endpoint.receive(data, (SRC[0], SRC[1] + 1), T0))

    def test_drops_conflicting_packet_with_same_key(self) -> None:
        """Same key but different contents is not a retransmission and gets nothing."""
        endpoint = _endpoint()
        request = _new(endpoint.receive(_request(password=b"one"), SRC, T0))
        _dropped(endpoint.receive(_request(password=b"two"), SRC, T0), "conflicting_duplicate")
        endpoint.reply(request, Code.ACCESS_REJECT, [], T0)
        _dropped(endpoint.receive(_request(password=b"two"), SRC, T0), "conflicting_duplicate")

    def test_abandon_lets_retransmission_through(self) -> None:
        """After abandon, a retransmission is processed as new."""
        endpoint = _endpoint()
        data = _request()
        request = _new(endpoint.receive(data, SRC, T0))
        endpoint.abandon(request)
        _new(endpoint.receive(data, SRC, T0 + 1))

    def test_remember_reply_serves_reply_from_another_node(self) -> None:
        """A reply encoded elsewhere is resent to local retransmissions."""
        endpoint = _endpoint()
        data = _request()
        request = _new(endpoint.receive(data, SRC, T0))
        remote = codec.encode_response(
            Code.ACCESS_ACCEPT, request.packet.identifier, request.packet.authenticator, [], SECRET
        )
        endpoint.remember_reply(request, remote, T0 + 1)
        assert endpoint.receive(data, SRC, T0 + 2) == Respond(remote, "duplicate")

    def test_reply_after_expiry_of_in_progress_entry_is_still_cached(self) -> None:
        """A slow reply after its in-progress entry expired is still cached for retransmits."""
        endpoint = _endpoint(reply_ttl=5.0)
        data = _request()
        request = _new(endpoint.receive(data, SRC, T0))
        endpoint.expire(T0 + 10)
        assert len(endpoint) == 0
        reply = endpoint.reply(request, Code.ACCESS_REJECT, [], T0 + 10)
        assert endpoint.receive(data, SRC, T0 + 11) == Respond(reply, "duplicate")

    def test_status_server_is_not_cached(self) -> None:
        """Status-Server is answered every time and leaves no cache entry."""
        endpoint = _endpoint()
        data = codec.encode_request(Code.STATUS_SERVER, 3, bytes(16), (), SECRET)
        assert isinstance(endpoint.receive(data, SRC, T0), Respond)
        assert isinstance(endpoint.receive(data, SRC, T0), Respond)
        assert len(endpoint) == 0

    def test_status_server_is_dropped_when_turned_off(self) -> None:
        """With status_server = false a valid Status-Server is dropped and counted."""
        endpoint = Endpoint(_table(MaPolicy.YES, ProxyStatePolicy.AUTO), status_server=False)
        data = codec.encode_request(Code.STATUS_SERVER, 3, bytes(16), (), SECRET)
        assert endpoint.receive(data, SRC, T0) == Drop("status_server_disabled")
        assert endpoint.counters["status_server_disabled"] == 1


class TestExpiryAndBounds:
    """expire(), next_deadline() and max_entries."""

    def test_next_deadline_tracks_oldest_entry(self) -> None:
        """The deadline is the oldest entry's stamp plus reply_ttl; None when empty."""
        endpoint = _endpoint(reply_ttl=10.0)
        assert endpoint.next_deadline() is None
        first = _new(endpoint.receive(_request(1), SRC, T0))
        _new(endpoint.receive(_request(2), SRC, T0 + 3))
        assert endpoint.next_deadline() == T0 + 10
        endpoint.reply(first, Code.ACCESS_REJECT, [], T0 + 4)
        assert endpoint.next_deadline() == T0 + 13
        endpoint.expire(T0 + 13)
        assert endpoint.next_deadline() == T0 + 14
        assert len(endpoint) == 1
        endpoint.expire(T0 + 14)
        assert endpoint.next_deadline() is None
        assert len(endpoint) == 0

    def test_expire_keeps_young_entries(self) -> None:
        """Entries younger than reply_ttl survive expire()."""
        endpoint = _endpoint(reply_ttl=10.0)
        for i in range(5):
            _new(endpoint.receive(_request(i), SRC, T0 + i))
        endpoint.expire(T0 + 12)
        assert len(endpoint) == 2

    def test_evicts_oldest_answered_entry_when_full(self) -> None:
        """At max_entries, the oldest answered request makes room for a new one."""
        endpoint = _endpoint(max_entries=2)
        first_data = _request(1)
        first = _new(endpoint.receive(first_data, SRC, T0))
        endpoint.reply(first, Code.ACCESS_REJECT, [], T0)
        second = _new(endpoint.receive(_request(2), SRC, T0))
        _new(endpoint.receive(_request(3), SRC, T0 + 1))
        assert len(endpoint) == 2
        endpoint.reply(second, Code.ACCESS_REJECT, [], T0 + 2)
        _new(endpoint.receive(first_data, SRC, T0 + 3))
        assert len(endpoint) == 2

    def test_drops_when_full_of_requests_in_progress(self) -> None:
        """With only in-progress entries, a new request is dropped, never double-processed."""
        endpoint = _endpoint(max_entries=2)
        _new(endpoint.receive(_request(1), SRC, T0))
        _new(endpoint.receive(_request(2), SRC, T0))
        _dropped(endpoint.receive(_request(3), SRC, T0), "cache_full")
        assert endpoint.counters["cache_full"] == 1

    @pytest.mark.parametrize(("ttl", "size"), [(0.0, 10), (1.0, 0)])
    def test_rejects_nonsense_bounds(self, ttl: float, size: int) -> None:
        """reply_ttl and max_entries must be positive."""
        with pytest.raises(ValueError, match="positive"):
            Endpoint(_table(), reply_ttl=ttl, max_entries=size)


class TestStatusServer:
    """RFC 5997 §3 Status-Server."""

    def test_answers_signed_status_server_with_access_accept(self) -> None:
        """A Status-Server with valid MA gets a signed Access-Accept."""
        endpoint = _endpoint()
        auth = bytes(range(1, 17))
        data = codec.encode_request(Code.STATUS_SERVER, 200, auth, (), SECRET)
        event = endpoint.receive(data, SRC, T0)
        assert isinstance(event, Respond)
        assert event.reason == "status_server"
        packet = codec.decode(event.data)
        assert (packet.code, packet.identifier) == (Code.ACCESS_ACCEPT, 200)
        assert packet.attributes[0][0] == AttrType.MESSAGE_AUTHENTICATOR
        assert codec.verify_response_authenticator(event.data, auth, SECRET)
        assert codec.verify_message_authenticator(event.data, SECRET, auth) is True

    @pytest.mark.parametrize("policy", list(MaPolicy))
    def test_drops_status_server_without_message_authenticator(self, policy: MaPolicy) -> None:
        """Status-Server without MA is dropped whatever the client's MA policy."""
        data = codec.encode_request(
            Code.STATUS_SERVER, 1, bytes(16), (), SECRET, message_authenticator=False
        )
        _dropped(
            _endpoint(policy).receive(data, SRC, T0),
            "status_server_without_message_authenticator",
        )

    def test_drops_status_server_with_bad_message_authenticator(self) -> None:
        """Status-Server signed with the wrong secret is dropped."""
        data = codec.encode_request(Code.STATUS_SERVER, 1, bytes(16), (), b"wrong")
        _dropped(_endpoint().receive(data, SRC, T0), "bad_message_authenticator")

    def test_drops_malformed_status_server(self) -> None:
        """A broken Status-Server is malformed like any other packet."""
        data = b"\x0c\x01\x00\x15" + bytes(17)
        assert _endpoint().receive(data, SRC, T0) == Drop("malformed", "attribute_overflow")
