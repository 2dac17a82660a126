"""The NAS table: which source addresses may talk to us, and with which secret and policy.

A datagram from an address no client covers is dropped without an answer (RFC 2865 §3: a
request from a client without a shared secret "MUST be silently discarded"). When networks of
several clients contain the address, the longest prefix wins, as in FreeRADIUS ``clients.conf``
("the smallest possible network will be used as the best match").

An IPv4 client also matches its IPv4-mapped IPv6 form (``::ffff:192.0.2.1``), which is how a
dual-stack socket bound to ``::`` reports IPv4 peers.

Lookups run once per datagram, so exact-address hits are cached in a bounded dict; the table is
immutable after construction, so the cache never goes stale.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CACHE_LIMIT = 65_536


class MaPolicy(StrEnum):
    """Whether an Access-Request must carry Message-Authenticator (FreeRADIUS 3.2.5 names)."""

    YES = "yes"  #: always required; a request without it is dropped
    NO = "no"  #: never required (checked when present)
    AUTO = "auto"  #: required once this client has sent one valid Message-Authenticator


class ProxyStatePolicy(StrEnum):
    """Whether Proxy-State without Message-Authenticator is refused (FreeRADIUS 3.2.5 names)."""

    YES = "yes"  #: drop requests with Proxy-State but no Message-Authenticator
    NO = "no"  #: accept them
    AUTO = "auto"  #: decide from the client's first request; see the endpoint module


@dataclass(frozen=True, slots=True)
class Client:
    """One RADIUS client (NAS), as configured.

    Attributes:
        name: the configured short name, used in logs and duplicate-detection keys.
        networks: the source networks this client sends from.
        secret: the shared secret (never shown in ``repr``).
        require_message_authenticator: Message-Authenticator policy for Access-Request.
        limit_proxy_state: Proxy-State policy for Access-Request without Message-Authenticator.
    """

    name: str
    networks: tuple[IPNetwork, ...]
    secret: bytes = field(repr=False)
    require_message_authenticator: MaPolicy = MaPolicy.AUTO
    limit_proxy_state: ProxyStatePolicy = ProxyStatePolicy.AUTO

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a client needs a name")
        if not self.networks:
            raise ValueError(f"client {self.name} has no network")
        if not self.secret:
            raise ValueError(f"client {self.name} has an empty secret")


class ClientTable:
    """Longest-prefix match of source addresses to clients.

    Args:
        clients: the configured clients.

    Raises:
        ValueError: two clients share a name, or the same network is listed twice (in one
            client or in two), which would make the match ambiguous.
    """

    __slots__ = ("_cache", "_clients", "_tables")

    def __init__(self, clients: Iterable[Client]) -> None:
        self._clients: tuple[Client, ...] = tuple(clients)
        # family (4 or 6) -> [(prefix length, {network as int: client})], longest prefix first
        tables: dict[int, dict[int, dict[int, Client]]] = {4: {}, 6: {}}
        owners: dict[IPNetwork, str] = {}
        names: set[str] = set()
        for client in self._clients:
            if client.name in names:
                raise ValueError(f"client name {client.name!r} is used twice")
            names.add(client.name)
            for network in client.networks:
                if network in owners:
                    raise ValueError(
                        f"network {network} is listed by both {owners[network]!r} "
                        f"and {client.name!r}"
                    )
                owners[network] = client.name
                by_prefix = tables[network.version].setdefault(network.prefixlen, {})
                by_prefix[int(network.network_address)] = client
        self._tables: dict[int, tuple[tuple[int, int, dict[int, Client]], ...]] = {
            version: tuple(
                ((32 if version == 4 else 128) - prefix, prefix, entries)
                for prefix, entries in sorted(by_version.items(), reverse=True)
            )
            for version, by_version in tables.items()
        }
        self._cache: dict[str, Client] = {}

    @property
    def clients(self) -> tuple[Client, ...]:
        """The configured clients, in configuration order."""
        return self._clients

    def lookup(self, ip: str) -> Client | None:
        """Return the client whose most specific network contains ``ip``, or None.

        Args:
            ip: the source address as the socket reports it (IPv4, IPv6, IPv4-mapped IPv6,
                possibly with a ``%scope`` suffix).

        Returns:
            The matching client, or None for an unknown (or unparsable) address.
        """
        hit = self._cache.get(ip)
        if hit is not None:
            return hit
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        value = int(address)
        for shift, _prefix, entries in self._tables[address.version]:
            client = entries.get(value >> shift << shift)
            if client is not None:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[ip] = client
                return client
        return None
