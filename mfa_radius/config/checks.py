"""Checks that relate several configuration keys, and warnings about deadlines that cannot fit.

Responsible for the rules a single field cannot express: one of ``secret`` and ``secret_file``,
factors that suit the mode, a profile whose ``primary`` names a configured backend, unique
names. Each ``ValueError`` check is called by the validator of the model it concerns in
:mod:`mfa_radius.config.schema`, so pydantic reports it at that section's key path
(``profile.vpn: ...``) and the loader turns it into a ``ConfigError``. A rule about the whole
file raises :class:`KeyProblem`, which carries the key path it is about (``client[1].ipaddr[0]``)
so that the message names the key and not the top level. :func:`deadline_warnings` and
:func:`client_overlaps` are advice, not errors: ``check-config`` prints them and carries on.

Must not read files or the environment, nor change a value: a check only refuses or warns.
It imports the schema only for type annotations, because the schema calls into it.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from mfa_radius.core.model import Mode

if TYPE_CHECKING:
    from mfa_radius.config.schema import (
        Config,
        IpNetwork,
        LdapConfig,
        ProfileConfig,
        WebhookConfig,
    )


class KeyProblem(ValueError):
    """A rule across sections is broken at ``key`` (a key path such as ``client[1].ipaddr[0]``).

    pydantic reports an error raised by ``Config``'s validator at the top level; the loader reads
    ``key`` from this exception to name the place the admin must change.

    Args:
        key: the key path, in the loader's ``section[index].key`` notation.
        message: what is wrong there, without echoing a secret.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def one_secret(secret: SecretStr | None, secret_file: Path | None) -> None:
    """Require exactly one way of giving a RADIUS peer's shared secret.

    Both set would leave it unclear which one the NAS uses; neither leaves the peer without one.

    Args:
        secret: the inline ``secret``.
        secret_file: the ``secret_file`` path.

    Raises:
        ValueError: when both or neither are set.
    """
    if (secret is None) == (secret_file is None):
        raise ValueError("set exactly one of secret and secret_file")


def factors_fit_mode(profile: ProfileConfig) -> None:
    """Require factors the profile's mode can use, with the phone numbers they send from.

    An approve call has no code to type, so it is a mode of its own; a text or a call without a
    sender number would fail at the first login instead of at start-up.

    Args:
        profile: a ``[profile.NAME]`` section.

    Raises:
        ValueError: naming the keys that disagree.
    """
    if profile.mode is Mode.APPROVE and profile.factors != ["approve"]:
        raise ValueError('mode = "approve" needs factors = ["approve"]')
    if profile.mode is not Mode.APPROVE and "approve" in profile.factors:
        raise ValueError('factor "approve" needs mode = "approve"')
    phone = {"sms", "voice", "approve"} & set(profile.factors)
    if "sms" in phone and not profile.sms_sender:
        raise ValueError("factor sms needs sms_sender")
    if phone - {"sms"} and not profile.voice_caller_id:
        raise ValueError("factors voice and approve need voice_caller_id")


def groups_need_a_directory(profile: ProfileConfig) -> None:
    """Refuse group rules in a profile whose password backend knows no groups.

    Only the LDAP directory reports group membership; elsewhere ``require_groups`` would
    reject everyone and ``exempt_groups`` would silently never apply.

    Args:
        profile: a ``[profile.NAME]`` section.

    Raises:
        ValueError: when groups are set and ``primary`` is not ``ldap``.
    """
    if (profile.exempt_groups or profile.require_groups) and profile.primary != "ldap":
        raise ValueError('exempt_groups and require_groups need primary = "ldap"')


def ldap_bind_method(ldap: LdapConfig) -> None:
    """Require a protected connection and a way to find users in ``[ldap]``.

    Args:
        ldap: the ``[ldap]`` section.

    Raises:
        ValueError: for cleartext passwords not explicitly allowed, no service account and no
            ``dn_template``, or a filter without ``{username}``.
    """
    cleartext = [u for u in ldap.server if u.startswith("ldap://")]
    if cleartext and not ldap.start_tls and not ldap.allow_cleartext:
        raise ValueError(
            "ldap:// without start_tls sends passwords in clear; "
            "use ldaps://, start_tls = true, or allow_cleartext = true"
        )
    no_service_account = not ldap.bind_dn or ldap.bind_password_file is None
    if ldap.server and ldap.dn_template is None and no_service_account:
        raise ValueError("set bind_dn and bind_password_file, or dn_template")
    if "{username}" not in (ldap.dn_template or ldap.user_filter):
        raise ValueError("the filter or dn_template must contain {username}")


def webhook_complete(webhook: WebhookConfig) -> None:
    """Require both ends of the webhook or neither.

    A listener Twilio is not told about never hears a keypress; a public URL with no listener
    behind it makes every approve call time out.

    Args:
        webhook: the ``[webhook]`` section.

    Raises:
        ValueError: when only one of ``listen`` and ``public_url`` is set.
    """
    if bool(webhook.listen) != bool(webhook.public_url):
        raise ValueError("set both listen and public_url, or neither")


def sections_agree(cfg: Config) -> None:
    """Check what spans sections: unique names and networks, profiles, the backends they use.

    Args:
        cfg: the whole configuration, every section already valid on its own.

    Raises:
        KeyProblem: for a duplicate name, a network listed twice, a client naming a missing
            profile, or a profile whose ``primary`` has no backend configured.
    """
    for kind, names in (
        ("client", [c.name for c in cfg.client]),
        ("home_server", [h.name for h in cfg.home_server]),
    ):
        for index, name in enumerate(names):
            if name in names[:index]:
                raise KeyProblem(f"{kind}[{index}].name", f"{kind} names must be unique: {name}")
    unique_networks(cfg)
    for index, client in enumerate(cfg.client):
        if client.profile != "default" and client.profile not in cfg.profile:
            raise KeyProblem(
                f"client[{index}].profile",
                f"client {client.name!r} names profile {client.profile!r}, "
                f"which has no [profile.{client.profile}] section",
            )
    for name, prof in cfg.profiles().items():
        if prof.primary == "upstream" and not cfg.home_server:
            raise KeyProblem(
                f"profile.{name}.primary",
                f'profile {name!r} uses primary = "upstream" but no [[home_server]] is configured',
            )
        if prof.primary == "ldap" and not cfg.ldap.server:
            raise KeyProblem(
                f"profile.{name}.primary",
                f'profile {name!r} uses primary = "ldap" but [ldap] server is empty',
            )


def unique_networks(cfg: Config) -> None:
    """Refuse a network listed twice, in one client or in two.

    A source address is matched to the client with its most specific network; two clients with
    the same network would leave it unclear whose secret and profile a request gets (the NAS
    table refuses to start). ``10.1.2.3`` and ``10.1.2.3/32`` are the same network.

    Args:
        cfg: the whole configuration.

    Raises:
        KeyProblem: at the second listing, naming both clients and the network.
    """
    owners: dict[IpNetwork, str] = {}
    for index, client in enumerate(cfg.client):
        for position, network in enumerate(client.ipaddr):
            first = owners.get(network)
            if first is None:
                owners[network] = client.name
                continue
            where = f"client[{index}].ipaddr[{position}]"
            if first == client.name:
                raise KeyProblem(where, f"client {first!r} lists {network} twice")
            raise KeyProblem(
                where,
                f"clients {first!r} and {client.name!r} both list {network}; "
                "a network may belong to one client only",
            )


def client_overlaps(cfg: Config) -> list[str]:
    """Say where one client's network lies inside another client's (allowed, but worth seeing).

    A request is matched to the client with the longest prefix containing its source, as in
    FreeRADIUS ``clients.conf``: the smaller network's client gets it. Overlaps between networks
    of the same client change nothing and are not reported.

    Args:
        cfg: the validated configuration.

    Returns:
        One sentence per overlapping pair, starting with the key path of the more specific
        network; empty when no networks overlap.
    """
    listed = [
        (f"client[{index}].ipaddr[{position}]", client.name, network)
        for index, client in enumerate(cfg.client)
        for position, network in enumerate(client.ipaddr)
    ]
    notes = []
    for key, name, network in listed:
        for other_key, other_name, other in listed:
            if other_name != name and _strictly_inside(network, other):
                notes.append(
                    f"{key}: {network} of client {name!r} lies inside {other} of client "
                    f"{other_name!r} ({other_key}); requests from {network} use {name!r}, "
                    "the most specific network"
                )
    return notes


def _strictly_inside(network: IpNetwork, other: IpNetwork) -> bool:
    """Whether ``network`` is a smaller network within ``other`` (same address family)."""
    if network.prefixlen <= other.prefixlen:
        return False
    if isinstance(network, IPv4Network) and isinstance(other, IPv4Network):
        return network.subnet_of(other)
    if isinstance(network, IPv6Network) and isinstance(other, IPv6Network):
        return network.subnet_of(other)
    return False


def deadline_warnings(cfg: Config) -> list[str]:
    """Say where a backend's deadlines cannot fit in a profile's response window.

    The proxy answers every request within the NAS's window (with the fail-mode answer when
    a backend is slow), so a fail-over or a timeout that needs longer never gets to help.

    Args:
        cfg: the validated configuration.

    Returns:
        One sentence per problem; empty when everything fits.
    """
    warnings = []
    upstream_wait = sum(h.response_window for h in cfg.home_server)
    ldap_wait = (cfg.ldap.connect_timeout + 2 * cfg.ldap.operation_timeout) * max(
        len(cfg.ldap.server), 1
    )
    local_wait = cfg.enrolment.timeout + cfg.store.timeout * 3
    for name, prof in cfg.profiles().items():
        budget = prof.response_window
        if prof.primary == "upstream" and upstream_wait > budget:
            warnings.append(
                f"profile.{name}.response_window: {budget:g} s cannot cover the home servers' "
                f"fail-over ({upstream_wait:g} s of response_window in all); a slow server "
                "yields the fail-mode answer instead of trying the next"
            )
        if prof.primary == "ldap" and ldap_wait > budget:
            warnings.append(
                f"profile.{name}.response_window: {budget:g} s is shorter than the LDAP "
                f"deadlines ({ldap_wait:g} s of connect and operation timeouts over every server)"
            )
        if local_wait > budget:
            warnings.append(
                f"profile.{name}.response_window: {budget:g} s is shorter than the store and "
                f"enrolment deadlines of one login ({local_wait:g} s)"
            )
    return warnings
