"""TOTP verification against RFC 6238 Appendix B and pyotp, code formats, append-mode split."""

from __future__ import annotations

import base64

import pyotp
import pytest

from mfa_radius.core import otp
from mfa_radius.core.model import TotpToken

SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}

# RFC 6238 Appendix B: (time, algorithm, 8-digit TOTP)
RFC6238_VECTORS = [
    (59, "sha1", "94287082"),
    (59, "sha256", "46119246"),
    (59, "sha512", "90693936"),
    (1111111109, "sha1", "07081804"),
    (1111111109, "sha256", "68084774"),
    (1111111109, "sha512", "25091201"),
    (1111111111, "sha1", "14050471"),
    (1111111111, "sha256", "67062674"),
    (1111111111, "sha512", "99943326"),
    (1234567890, "sha1", "89005924"),
    (1234567890, "sha256", "91819424"),
    (1234567890, "sha512", "93441116"),
    (2000000000, "sha1", "69279037"),
    (2000000000, "sha256", "90698825"),
    (2000000000, "sha512", "38618901"),
    (20000000000, "sha1", "65353130"),
    (20000000000, "sha256", "77737706"),
    (20000000000, "sha512", "47863826"),
]


def _token(algorithm: str = "sha1", digits: int = 8, token_id: str = "t1") -> TotpToken:  # noqa: S107 (an id)
    return TotpToken(token_id=token_id, secret=SEEDS[algorithm], digits=digits, algorithm=algorithm)


class TestHotp:
    @pytest.mark.parametrize(
        ("when", "algorithm", "expected"),
        RFC6238_VECTORS,
        ids=[f"{t}-{a}" for t, a, _ in RFC6238_VECTORS],
    )
    def test_matches_rfc6238_appendix_b(self, when: int, algorithm: str, expected: str) -> None:
        """Each Appendix B vector is reproduced exactly."""
        code = otp.hotp(SEEDS[algorithm], otp.timecode(when, 30), digits=8, algorithm=algorithm)
        assert code == expected

    @pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
    @pytest.mark.parametrize("digits", [6, 8])
    def test_agrees_with_pyotp(self, algorithm: str, digits: int) -> None:
        """Our HOTP gives pyotp's TOTP for a range of times."""
        secret = SEEDS[algorithm]
        reference = pyotp.TOTP(
            base64.b32encode(secret).decode(), digits=digits, digest=algorithm, interval=30
        )
        for when in range(1_700_000_000, 1_700_000_000 + 30 * 50, 30):
            ours = otp.hotp(secret, otp.timecode(when, 30), digits=digits, algorithm=algorithm)
            assert ours == reference.at(when)

    def test_rejects_unknown_algorithm(self) -> None:
        """An unknown digest name is a programming error."""
        with pytest.raises(ValueError, match="md5"):
            otp.hotp(b"x" * 20, 1, algorithm="md5")


class TestCheckTotp:
    def test_accepts_current_code_and_names_its_step(self) -> None:
        """The current code matches at the current time step."""
        token = _token()
        match = otp.check_totp(
            [token], "07081804", now=1111111109, lookback_steps=1, lookforward_steps=1
        )
        assert match is not None
        assert match.token is token
        assert match.timecode == 1111111109 // 30

    def test_accepts_previous_step_within_lookback(self) -> None:
        """A code of the previous step is accepted with a look-back of one."""
        match = otp.check_totp(
            [_token()], "07081804", now=1111111109 + 30, lookback_steps=1, lookforward_steps=0
        )
        assert match is not None
        assert match.timecode == 1111111109 // 30

    def test_rejects_previous_step_when_lookback_is_zero(self) -> None:
        """With no look-back, last step's code is refused."""
        assert (
            otp.check_totp(
                [_token()], "07081804", now=1111111109 + 30, lookback_steps=0, lookforward_steps=1
            )
            is None
        )

    def test_accepts_next_step_within_lookforward(self) -> None:
        """A token running one step fast is accepted with a look-forward of one."""
        assert (
            otp.check_totp(
                [_token()], "07081804", now=1111111109 - 30, lookback_steps=0, lookforward_steps=1
            )
            is not None
        )

    def test_rejects_wrong_code(self) -> None:
        """A wrong code matches nothing."""
        assert (
            otp.check_totp(
                [_token()], "12345678", now=1111111109, lookback_steps=2, lookforward_steps=2
            )
            is None
        )

    @pytest.mark.parametrize(
        "code",
        [
            "",
            "0708180",
            "070818044",
            "O7O818O4",
            "\uff10\uff17\uff10\uff18\uff11\uff18\uff10\uff14",
        ],
    )
    def test_rejects_malformed_code(self, code: str) -> None:
        """Wrong length, letters or non-ASCII digits are never compared."""
        assert (
            otp.check_totp([_token()], code, now=1111111109, lookback_steps=1, lookforward_steps=1)
            is None
        )

    def test_finds_second_token(self) -> None:
        """A user with two tokens can use either."""
        other = TotpToken(token_id="t0", secret=b"A" * 20, digits=8)
        match = otp.check_totp(
            [other, _token()], "07081804", now=1111111109, lookback_steps=0, lookforward_steps=0
        )
        assert match is not None
        assert match.token.token_id == "t1"


class TestReplay:
    def test_key_names_token_and_step(self) -> None:
        """The replay mark is per token and time step."""
        match = otp.CodeMatch(token=_token(token_id="abc"), timecode=42)
        assert otp.replay_key(match) == "totp:abc:42"

    def test_ttl_covers_the_rest_of_the_acceptance_window(self) -> None:
        """The mark lives until the step can no longer be accepted, plus one step."""
        match = otp.CodeMatch(token=_token(), timecode=100)
        # step 100 is accepted until the start of step 100 + 1 + 1 (lookback 1); +1 step skew
        assert otp.replay_ttl(match, now=100 * 30, lookback_steps=1) == 3 * 30

    def test_ttl_is_at_least_one_step(self) -> None:
        """Even late in the window the mark lives a full step."""
        match = otp.CodeMatch(token=_token(), timecode=100)
        assert otp.replay_ttl(match, now=200 * 30, lookback_steps=0) == 30


class TestSplitAppended:
    @pytest.mark.parametrize(
        ("password", "delimiter", "expected"),
        [
            (b"secret,123456", ",", (b"secret", "123456")),
            (b"se,cr,et,123456", ",", (b"se,cr,et", "123456")),
            (b"secret123456", "", (b"secret", "123456")),
            (b"pw|12345678", "|", (b"pw", "12345678")),
        ],
        ids=["simple", "delimiter-in-password", "no-delimiter", "eight-digits"],
    )
    def test_splits_at_last_delimiter(
        self, password: bytes, delimiter: str, expected: tuple[bytes, str]
    ) -> None:
        """The code is what follows the last delimiter."""
        assert otp.split_appended(password, delimiter, 6) == expected

    @pytest.mark.parametrize("password", [b"secret", b"secret,12ab56", b"secret,123"])
    def test_returns_none_without_a_code(self, password: bytes) -> None:
        """No delimiter, or a non-numeric or short code, means no code."""
        assert otp.split_appended(password, ",", 6) is None


def test_provisioning_uri_carries_parameters() -> None:
    """The otpauth URI names issuer, user, digits, period and algorithm."""
    uri = otp.provisioning_uri(
        b"12345678901234567890",
        username="alice",
        issuer="ACME VPN",
        digits=8,
        time_step=60,
        algorithm="sha256",
    )
    assert uri.startswith("otpauth://totp/ACME%20VPN:alice?")
    assert "secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" in uri
    assert "digits=8" in uri
    assert "period=60" in uri
    assert "algorithm=SHA256" in uri
