"""Factor choice, menu answers, sent-code hashes, phone numbers and limits arithmetic."""

from __future__ import annotations

import pytest

from mfa_radius.core import factors, limits
from mfa_radius.core.model import Factor, Identity, TotpToken, User

APP = TotpToken(token_id="t", secret=b"s" * 20)


class TestAvailable:
    def test_profile_order_and_what_the_user_has(self) -> None:
        """The usable factors follow the profile's order, limited to what the user has."""
        user = User(user_id="u", username="a", phone="+14155550123", tokens=(APP,))
        allowed = (Factor.SMS, Factor.TOTP, Factor.VOICE)
        assert factors.available(user, "+14155550123", allowed) == allowed

    def test_no_phone_means_app_only(self) -> None:
        """Without a valid number only the app remains."""
        user = User(user_id="u", username="a", tokens=(APP,))
        assert factors.available(user, None, (Factor.SMS, Factor.TOTP)) == (Factor.TOTP,)

    def test_regions_limit_phone_factors(self) -> None:
        """A number outside allowed_regions is not used for texts or calls."""
        user = User(user_id="u", username="a", phone="+33612345678")
        usable = factors.available(
            user, "+33612345678", (Factor.SMS,), allowed_regions=frozenset({"US"})
        )
        assert usable == ()


class TestPhones:
    @pytest.mark.parametrize(
        ("raw", "region", "expected"),
        [
            ("+1 415 555 0123", None, "+14155550123"),
            ("(415) 555-0123", "US", "+14155550123"),
            ("0151 12345678", "DE", "+4915112345678"),
            ("12345", "US", None),
            ("not a number", None, None),
        ],
    )
    def test_normalise_to_e164(self, raw: str, region: str | None, expected: str | None) -> None:
        """Numbers become E.164; invalid ones are refused."""
        assert factors.normalise_phone(raw, default_region=region) == expected

    def test_region_of_a_number(self) -> None:
        """The destination region drives per-country limits and the allow list."""
        assert factors.region_of("+4915112345678") == "DE"

    def test_directory_phone_is_used_when_the_database_has_none(self) -> None:
        """The enrolment database wins; the directory's first number is the fallback."""
        identity = Identity(phones=("+14155550123",))
        assert factors.phone_of(User(user_id="u", username="a"), identity) == "+14155550123"
        assert factors.phone_of(User(user_id="u", username="a", phone="+1"), identity) == "+1"


class TestMenu:
    @pytest.mark.parametrize(
        ("answer", "expected"),
        [
            ("1", Factor.SMS),
            (" SMS ", Factor.SMS),
            ("2", Factor.VOICE),
            ("call", Factor.VOICE),
            ("123456", None),
            ("", None),
        ],
    )
    def test_parse_choice(self, answer: str, expected: Factor | None) -> None:
        """Menu words and digits select a factor; anything else is a code."""
        assert factors.parse_choice(answer) is expected

    def test_suffix_lists_the_other_phone_factors(self) -> None:
        """The menu names the phone factors other than the current one."""
        usable = (Factor.TOTP, Factor.SMS, Factor.VOICE)
        assert factors.menu_suffix(usable, Factor.SMS) == " (or type 2 for a call)"
        assert factors.menu_suffix((Factor.TOTP,), Factor.TOTP) == ""


class TestSentCodes:
    def test_hash_matches_only_its_code_and_state(self) -> None:
        """The keyed hash accepts the sent code for its State, nothing else."""
        digest = factors.code_hash(b"k" * 32, b"state-1", "123456")
        assert factors.sent_code_matches(b"k" * 32, b"state-1", digest, "123456")
        assert not factors.sent_code_matches(b"k" * 32, b"state-2", digest, "123456")
        assert not factors.sent_code_matches(b"k" * 32, b"state-1", digest, "123457")
        assert not factors.sent_code_matches(b"x" * 32, b"state-1", digest, "123456")

    def test_no_hash_never_matches(self) -> None:
        """A challenge without a sent code accepts no sent code."""
        assert not factors.sent_code_matches(b"k" * 32, b"s", "", "123456")

    def test_sms_text_template(self) -> None:
        """The text carries the organisation, the code and its validity."""
        text = factors.sms_text(
            "{organisation}: {code} ({minutes} min)", code="042917", minutes=5, organisation="ACME"
        )
        assert text == "ACME: 042917 (5 min)"


class TestLockoutDelay:
    @pytest.mark.parametrize(
        ("failures", "seconds"), [(4, 0), (5, 60), (6, 120), (7, 240), (20, 3600)]
    )
    def test_doubles_from_the_threshold_up_to_the_maximum(
        self, failures: int, seconds: float
    ) -> None:
        """No lockout below the threshold; then base, doubling, capped."""
        assert limits.lockout_delay(failures, limits.Lockout()) == seconds

    def test_send_counters_name_user_number_region_and_day(self) -> None:
        """One send counts against the four limits."""
        keys = [
            k
            for k, _, _ in limits.send_counters(
                limits.SendLimits(), username="a", number="+1", region="US", day=7
            )
        ]
        assert keys == ["send:user:a", "send:number:+1", "send:region:US", "send:day:7"]
