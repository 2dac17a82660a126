"""Tests for mfa_radius.radius.clients: CIDR matching, IPv4-mapped IPv6, overlaps."""

from __future__ import annotations

import ipaddress

import pytest

from mfa_radius.radius.clients import Client, ClientTable, MaPolicy, ProxyStatePolicy


def _client(name: str, *networks: str) -> Client:
    return Client(
        name=name,
        networks=tuple(ipaddress.ip_network(n) for n in networks),
        secret=b"secret-" + name.encode(),
    )


@pytest.fixture
def table() -> ClientTable:
    return ClientTable(
        [
            _client("campus", "10.0.0.0/8"),
            _client("vpn-gw", "10.1.2.3/32", "2001:db8::10/128"),
            _client("lab", "10.1.0.0/16"),
            _client("v6-site", "2001:db8::/32"),
        ]
    )


class TestLookup:
    """Longest-prefix match."""

    @pytest.mark.parametrize(
        ("ip", "expected"),
        [
            ("10.1.2.3", "vpn-gw"),
            ("10.1.2.4", "lab"),
            ("10.200.0.1", "campus"),
            ("2001:db8::10", "vpn-gw"),
            ("2001:db8::11", "v6-site"),
            ("::ffff:10.1.2.3", "vpn-gw"),
            ("::ffff:10.9.9.9", "campus"),
            ("192.0.2.1", None),
            ("2001:db9::1", None),
            ("::ffff:192.0.2.1", None),
            ("not-an-ip", None),
        ],
    )
    def test_matches_most_specific_network(
        self, table: ClientTable, ip: str, expected: str | None
    ) -> None:
        """The smallest containing network wins, across families and mapped addresses."""
        client = table.lookup(ip)
        assert (client.name if client else None) == expected

    def test_repeated_lookup_returns_same_client(self, table: ClientTable) -> None:
        """A cached hit returns the same client object."""
        first = table.lookup("10.1.2.3")
        assert first is not None
        assert table.lookup("10.1.2.3") is first

    def test_does_not_cache_misses(self, table: ClientTable) -> None:
        """Unknown addresses are not remembered (spoofed sources cannot fill the cache)."""
        for i in range(100):
            assert table.lookup(f"192.0.2.{i}") is None
        assert table.lookup("10.1.2.3") is not None

    def test_matches_scoped_ipv6_address(self) -> None:
        """A link-local source with a %scope suffix matches its network."""
        table = ClientTable([_client("ll", "fe80::/10")])
        client = table.lookup("fe80::1%eth0")
        assert client is not None
        assert client.name == "ll"

    def test_default_route_matches_everything_last(self) -> None:
        """0.0.0.0/0 is the fallback behind any more specific network."""
        table = ClientTable([_client("any", "0.0.0.0/0"), _client("one", "192.0.2.1/32")])
        assert [c.name if c else None for c in map(table.lookup, ["192.0.2.1", "8.8.8.8"])] == [
            "one",
            "any",
        ]


class TestConstruction:
    """Invalid tables are refused at start-up."""

    def test_rejects_same_network_in_two_clients(self) -> None:
        """An identical network in two clients would be ambiguous."""
        with pytest.raises(ValueError, match=r"10\.0\.0\.0/8.*'a'.*'b'"):
            ClientTable([_client("a", "10.0.0.0/8"), _client("b", "10.0.0.0/8")])

    def test_rejects_same_network_twice_in_one_client(self) -> None:
        """A network repeated within a client is reported too."""
        with pytest.raises(ValueError, match="listed by both"):
            ClientTable([_client("a", "10.0.0.0/8", "10.0.0.0/8")])

    def test_rejects_duplicate_client_names(self) -> None:
        """Client names key logs and duplicate detection, so they must be unique."""
        with pytest.raises(ValueError, match="used twice"):
            ClientTable([_client("a", "10.0.0.0/8"), _client("a", "10.1.0.0/16")])

    def test_accepts_nested_networks(self) -> None:
        """Overlapping but different networks are fine (longest prefix decides)."""
        table = ClientTable([_client("a", "10.0.0.0/8"), _client("b", "10.0.0.0/9")])
        assert len(table.clients) == 2

    @pytest.mark.parametrize(
        ("name", "networks", "secret"),
        [("", ("10.0.0.0/8",), b"s"), ("a", (), b"s"), ("a", ("10.0.0.0/8",), b"")],
        ids=["no-name", "no-network", "empty-secret"],
    )
    def test_client_rejects_incomplete_definition(
        self, name: str, networks: tuple[str, ...], secret: bytes
    ) -> None:
        """A client needs a name, a network and a secret."""
        with pytest.raises(ValueError, match=r"\S"):
            Client(name, tuple(ipaddress.ip_network(n) for n in networks), secret)


class TestClient:
    """Client values."""

    def test_repr_hides_secret(self) -> None:
        """The shared secret never appears in repr (logs, tracebacks)."""
        client = _client("gw", "192.0.2.1/32")
        assert b"secret-gw".decode() not in repr(client)

    def test_defaults_to_auto_policies(self) -> None:
        """Both BlastRADIUS policies default to auto, as FreeRADIUS 3.2.5 does."""
        client = _client("gw", "192.0.2.1/32")
        assert client.require_message_authenticator is MaPolicy.AUTO
        assert client.limit_proxy_state is ProxyStatePolicy.AUTO

    def test_policies_parse_from_config_words(self) -> None:
        """The StrEnums accept the FreeRADIUS yes/no/auto words."""
        assert MaPolicy("yes") is MaPolicy.YES
        assert ProxyStatePolicy("no") is ProxyStatePolicy.NO
