"""The mapping from the configuration to ClientPolicy, SendLimits and Lockout."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping

import pytest

from mfa_radius.config import policy
from mfa_radius.config.schema import Config, ProfileConfig
from mfa_radius.core import limits
from mfa_radius.core.model import Factor, FailMode, Mode, Unenrolled
from mfa_radius.core.policy import ClientPolicy

SECRET = "s3cret-s3cret-s3cret"

FULL_PROFILE: Mapping[str, object] = {
    "primary": "ldap",
    "mode": "challenge",
    "factors": ["sms", "totp", "voice"],
    "show_menu": False,
    "sms_prompt": "Code sent to {phone}",
    "voice_prompt": "Code from the call to {phone}",
    "sms_text": "{organisation}: {code} ({minutes} min)",
    "sms_sender": "+15550100001",
    "voice_caller_id": "+15550100002",
    "organisation": "Example Ltd",
    "language": "en-GB",
    "allowed_countries": ["gb", "De"],
    "default_region": "GB",
    "code_length": 8,
    "append_delimiter": ";",
    "unenrolled": "accept",
    "fail_mode": "safe",
    "response_window": 20.0,
    "prompt": "Your {digits}-digit code",
    "exempt_users": ["svc-backup"],
    "exempt_groups": ["VPN-Exempt"],
    "require_groups": ["VPN-Users"],
    "pass_reply_message": True,
    "strip_domain": True,
    "strip_realm": True,
    "fold_case": False,
}
"""A profile setting every key to something other than its default."""

EXPECTED = ClientPolicy(
    name="vpn",
    mode=Mode.CHALLENGE,
    unenrolled=Unenrolled.ACCEPT,
    fail_mode=FailMode.SAFE,
    append_delimiter=";",
    prompt="Your {digits}-digit code",
    retry_prompt="Again, {attempts_left} left",
    challenge_ttl=120.0,
    max_attempts=5,
    lookback_steps=2,
    lookforward_steps=0,
    response_window=20.0,
    fold_case=False,
    strip_domain=True,
    strip_realm=True,
    exempt_users=frozenset({"svc-backup"}),
    exempt_groups=frozenset({"vpn-exempt"}),
    require_groups=frozenset({"vpn-users"}),
    pass_reply_message=True,
    factors=(Factor.SMS, Factor.TOTP, Factor.VOICE),
    show_menu=False,
    sms_prompt="Code sent to {phone}",
    voice_prompt="Code from the call to {phone}",
    sms_text="{organisation}: {code} ({minutes} min)",
    sms_sender="+15550100001",
    voice_caller_id="+15550100002",
    organisation="Example Ltd",
    language="en-GB",
    allowed_regions=frozenset({"GB", "DE"}),
    default_region="GB",
    code_length=8,
)

ALTERNATIVES: Mapping[str, object] = {
    "mode": "append",
    "factors": ["totp"],
    "show_menu": True,
    "sms_prompt": "Texted to {phone}",
    "voice_prompt": "Called {phone}",
    "sms_text": "{code}",
    "sms_sender": "+15550100009",
    "voice_caller_id": "+15550100008",
    "organisation": "Other Ltd",
    "language": "fr-FR",
    "allowed_countries": ["fr"],
    "default_region": None,
    "code_length": 7,
    "append_delimiter": ",",
    "unenrolled": "reject",
    "fail_mode": "secure",
    "response_window": 15.0,
    "prompt": None,
    "exempt_users": [],
    "exempt_groups": ["Other"],
    "require_groups": [],
    "pass_reply_message": False,
    "strip_domain": False,
    "strip_realm": False,
    "fold_case": True,
}
"""For each profile key the policy uses, a valid value other than FULL_PROFILE's."""


def _config(profile: Mapping[str, object], **sections: object) -> Config:
    return Config.model_validate(
        {
            "client": [{"name": "vpn", "ipaddr": "10.0.0.1", "secret": SECRET, "profile": "staff"}],
            "profile": {"staff": dict(profile)},
            "ldap": {
                "server": ["ldaps://ldap.example.org"],
                "dn_template": "uid={username},dc=example,dc=org",
            },
            "challenge": {
                "ttl": 120.0,
                "max_attempts": 5,
                "prompt": "Global {digits}",
                "retry_prompt": "Again, {attempts_left} left",
            },
            "totp": {"lookback_steps": 2, "lookforward_steps": 0},
            **sections,
        }
    )


def _policy(cfg: Config) -> ClientPolicy:
    return policy.client_policy(cfg, cfg.client[0])


class TestClientPolicy:
    def test_full_profile_maps_to_the_expected_policy(self) -> None:
        """Every profile key and the [challenge] and [totp] keys land in their policy field."""
        assert set(FULL_PROFILE) == set(ProfileConfig.model_fields)
        assert _policy(_config(FULL_PROFILE)) == EXPECTED

    def test_prompt_falls_back_to_the_challenge_prompt(self) -> None:
        """A profile without a prompt uses [challenge] prompt."""
        assert _policy(_config({**FULL_PROFILE, "prompt": None})).prompt == "Global {digits}"

    def test_default_profile_gives_the_core_defaults(self) -> None:
        """A client with no profile section gets the same policy as ClientPolicy's defaults."""
        cfg = Config.model_validate(
            {"client": [{"name": "vpn", "ipaddr": "10.0.0.1", "secret": SECRET}]}
        )
        assert _policy(cfg) == ClientPolicy(name="vpn")


class TestMappingIsComplete:
    def test_every_policy_field_is_copied_by_name_or_converted(self) -> None:
        """A ClientPolicy field with no profile key of its name needs a converter."""
        names = {f.name for f in dataclasses.fields(ClientPolicy)}
        assert set(policy.COPIED_BY_NAME) | set(policy.CONVERTERS) == names
        assert not set(policy.COPIED_BY_NAME) & set(policy.CONVERTERS)

    def test_copied_fields_have_the_same_type_on_both_sides(self) -> None:
        """A key copied unchanged has the policy field's type (a list is not a frozenset)."""
        hints = typing.get_type_hints(ClientPolicy)
        differing = {
            name: (ProfileConfig.model_fields[name].annotation, hints[name])
            for name in policy.COPIED_BY_NAME
            if ProfileConfig.model_fields[name].annotation != hints[name]
        }
        assert differing == {}

    def test_every_profile_key_is_used_or_explained(self) -> None:
        """A profile key is either tested below as reaching the policy or said not to."""
        keys = set(ProfileConfig.model_fields)
        assert set(ALTERNATIVES) | set(policy.NOT_IN_POLICY) == keys
        assert not set(ALTERNATIVES) & set(policy.NOT_IN_POLICY)
        assert all(reason.strip() for reason in policy.NOT_IN_POLICY.values())

    @pytest.mark.parametrize("key", sorted(ALTERNATIVES))
    def test_changing_a_profile_key_changes_the_policy(self, key: str) -> None:
        """Each profile key the policy claims to use does reach it."""
        changed = _policy(_config({**FULL_PROFILE, key: ALTERNATIVES[key]}))
        assert changed != EXPECTED


class TestLimits:
    def test_limits_section_maps_to_send_limits(self) -> None:
        """[limits] counts and windows pair up into the core's rates."""
        cfg = _config(
            FULL_PROFILE,
            limits={
                "user_sends": 2,
                "user_window": 60.0,
                "number_sends": 3,
                "number_window": 120.0,
                "country_sends": 50,
                "country_window": 600.0,
                "daily_sends": 99,
                "cooldown": 5.0,
            },
        )
        assert policy.send_limits(cfg) == limits.SendLimits(
            per_user=limits.Rate(2, 60.0),
            per_number=limits.Rate(3, 120.0),
            per_region=limits.Rate(50, 600.0),
            daily=99,
            cooldown=5.0,
        )

    def test_lockout_section_maps_to_lockout(self) -> None:
        """[lockout] keys keep their names in the core's Lockout."""
        cfg = _config(
            FULL_PROFILE,
            lockout={"threshold": 2, "base_delay": 10.0, "max_delay": 100.0, "memory": 1000.0},
        )
        assert policy.lockout(cfg) == limits.Lockout(
            threshold=2, base_delay=10.0, max_delay=100.0, memory=1000.0
        )

    def test_defaults_match_the_core_defaults(self) -> None:
        """Unset [limits] and [lockout] give the core's own defaults."""
        cfg = _config(FULL_PROFILE)
        assert policy.send_limits(cfg) == limits.SendLimits()
        assert policy.lockout(cfg) == limits.Lockout()
