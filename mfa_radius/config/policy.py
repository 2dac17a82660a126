"""The mapping from the configuration to the login engine's settings, written once.

Responsible for building :class:`~mfa_radius.core.policy.ClientPolicy` (how one NAS's logins
are decided) from the client's ``[profile.NAME]`` and the global ``[challenge]`` and ``[totp]``
sections, and the phone factors' :class:`~mfa_radius.core.limits.SendLimits` and
:class:`~mfa_radius.core.limits.Lockout` from ``[limits]`` and ``[lockout]``.

A ``ClientPolicy`` field named like a ``ProfileConfig`` key is copied by name; every other field
is in :data:`CONVERTERS`, the one table saying where it comes from. No field list is written out
by hand, so a key added on both sides needs no change here, and the tests fail when a field is
added to one side only (the policy would silently keep its default, or the key would be ignored).

Must not validate (the schema and the checks did, at start-up), read files or the environment,
nor rename anything: config keys are the admins' vocabulary and ``ClientPolicy`` is the core's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from mfa_radius.config.schema import ClientConfig, Config, ProfileConfig
from mfa_radius.core import limits
from mfa_radius.core.model import Factor
from mfa_radius.core.policy import ClientPolicy

Converter = Callable[[Config, ClientConfig, ProfileConfig], object]
"""Computes one ``ClientPolicy`` field from the configuration, the client and its profile."""

CONVERTERS: Mapping[str, Converter] = MappingProxyType(
    {
        # From the client itself: the audit line names the NAS, not its profile.
        "name": lambda cfg, client, prof: client.name,
        # [challenge] and [totp] are global; a profile may override only the prompt.
        "prompt": lambda cfg, client, prof: prof.prompt or cfg.challenge.prompt,
        "retry_prompt": lambda cfg, client, prof: cfg.challenge.retry_prompt,
        "challenge_ttl": lambda cfg, client, prof: cfg.challenge.ttl,
        "max_attempts": lambda cfg, client, prof: cfg.challenge.max_attempts,
        "lookback_steps": lambda cfg, client, prof: cfg.totp.lookback_steps,
        "lookforward_steps": lambda cfg, client, prof: cfg.totp.lookforward_steps,
        # Same name, other type: TOML lists become the core's immutable values.
        "factors": lambda cfg, client, prof: tuple(Factor(f) for f in prof.factors),
        "exempt_users": lambda cfg, client, prof: frozenset(prof.exempt_users),
        # Directories differ in the case of group names; the core compares case-folded.
        "exempt_groups": lambda cfg, client, prof: frozenset(
            g.casefold() for g in prof.exempt_groups
        ),
        "require_groups": lambda cfg, client, prof: frozenset(
            g.casefold() for g in prof.require_groups
        ),
        # The key says "countries" for admins; phone numbers carry ISO regions, upper case.
        "allowed_regions": lambda cfg, client, prof: frozenset(
            c.upper() for c in prof.allowed_countries
        ),
    }
)
"""``ClientPolicy`` fields that are not a profile key copied unchanged, with their source."""

COPIED_BY_NAME: tuple[str, ...] = tuple(
    f.name
    for f in dataclasses.fields(ClientPolicy)
    if f.name not in CONVERTERS and f.name in ProfileConfig.model_fields
)
"""``ClientPolicy`` fields taken unchanged from the profile key of the same name."""

NOT_IN_POLICY: Mapping[str, str] = MappingProxyType(
    {
        "primary": "chooses the password backend, which the composition root wires into each "
        "client's service Profile; the decision rules never depend on which one checked",
    }
)
"""Profile keys that ``ClientPolicy`` deliberately leaves out, with the reason."""


def client_policy(cfg: Config, client: ClientConfig) -> ClientPolicy:
    """The decision settings of one client, from its profile and the global sections.

    Args:
        cfg: the validated configuration.
        client: one of ``cfg.client``.

    Returns:
        The client's policy.

    Raises:
        AttributeError: when ``ClientPolicy`` gained a field that is neither a profile key nor
            in :data:`CONVERTERS` (a programming error, caught by the tests).
    """
    prof = cfg.profile_of(client)
    # Any: each value's type is that of the field it fills; the tests compare the profile's
    # annotations with ClientPolicy's for the copied fields and the full result for the rest.
    values: dict[str, Any] = {}
    for field in dataclasses.fields(ClientPolicy):
        convert = CONVERTERS.get(field.name)
        values[field.name] = (
            convert(cfg, client, prof) if convert is not None else getattr(prof, field.name)
        )
    return ClientPolicy(**values)


def send_limits(cfg: Config) -> limits.SendLimits:
    """How often codes may be sent, from ``[limits]``.

    Args:
        cfg: the validated configuration.

    Returns:
        The cluster-wide send limits.
    """
    lim = cfg.limits
    return limits.SendLimits(
        per_user=limits.Rate(lim.user_sends, lim.user_window),
        per_number=limits.Rate(lim.number_sends, lim.number_window),
        per_region=limits.Rate(lim.country_sends, lim.country_window),
        daily=lim.daily_sends,
        cooldown=lim.cooldown,
    )


def lockout(cfg: Config) -> limits.Lockout:
    """When wrong codes lock a user out, from ``[lockout]``.

    Args:
        cfg: the validated configuration.

    Returns:
        The lockout thresholds and delays.
    """
    section = cfg.lockout
    return limits.Lockout(
        threshold=section.threshold,
        base_delay=section.base_delay,
        max_delay=section.max_delay,
        memory=section.memory,
    )
