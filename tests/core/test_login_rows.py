"""The challenge state table, row by row, with explicit time and State values."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest

from mfa_radius.core import challenges, login
from mfa_radius.core.factors import upstream
from mfa_radius.core.model import (
    Accept,
    AcceptReason,
    ChallengeReply,
    Factor,
    Identity,
    Mode,
    PendingChallenge,
    PrimaryAccept,
    PrimaryChallenge,
    PrimaryReject,
    Reject,
    RejectReason,
    TotpToken,
    Unenrolled,
    User,
)
from mfa_radius.core.policy import ClientPolicy

NOW = 1_700_000_000.0
STATE = bytes(range(16))
ATTRS = ((25, b"class-a"), (11, b"vpn-users"))
TOKEN = TotpToken(token_id="tok", secret=b"k" * 20, digits=6)
ALICE = User(user_id="u1", username="alice", tokens=(TOKEN,))


def _policy(**changes: Any) -> ClientPolicy:
    return replace(ClientPolicy(name="vpn", max_attempts=3, challenge_ttl=300.0), **changes)


RECORD = PendingChallenge(
    username="alice",
    client="vpn",
    factor=Factor.TOTP,
    created=NOW,
    expires=NOW + 300,
    reply_attributes=ATTRS,
)


def _record(**changes: Any) -> PendingChallenge:
    return replace(RECORD, **changes)


class TestAfterPrimary:
    def test_primary_reject_ends_the_login_with_its_reason(self) -> None:
        """A rejected password is a Reject carrying the backend's reason."""
        result = login.after_primary(PrimaryReject(RejectReason.UNKNOWN_USER), _policy())
        assert result == Reject(RejectReason.UNKNOWN_USER)

    def test_primary_accept_goes_on(self) -> None:
        """An accepted password leads to the next step."""
        assert login.after_primary(PrimaryAccept(ATTRS), _policy()) is None

    def test_upstream_challenge_goes_on(self) -> None:
        """An upstream's own challenge is relayed, not decided here."""
        assert login.after_primary(PrimaryChallenge(b"up", "PIN?"), _policy()) is None

    def test_reply_message_is_kept_only_when_the_profile_allows(self) -> None:
        """The upstream's Reply-Message reaches the NAS only with pass_reply_message."""
        rejected = PrimaryReject(RejectReason.PRIMARY_REJECTED, "account expired")
        assert login.after_primary(rejected, _policy()) == Reject(RejectReason.PRIMARY_REJECTED)
        assert login.after_primary(rejected, _policy(pass_reply_message=True)) == Reject(
            RejectReason.PRIMARY_REJECTED, "account expired"
        )


def _with_groups(*groups: str) -> PrimaryAccept:
    return PrimaryAccept(ATTRS, Identity(dn="uid=alice", groups=frozenset(groups)))


class TestAfterPassword:
    def test_second_factor_follows_by_default(self) -> None:
        """Without exemptions and in challenge mode, the code is asked for."""
        assert login.after_password(_with_groups("staff"), _policy(), username="alice") is None

    def test_rejects_user_outside_required_groups(self) -> None:
        """require_groups refuses a user in none of them."""
        pol = _policy(require_groups=frozenset({"vpn-users"}))
        result = login.after_password(_with_groups("staff"), pol, username="alice")
        assert result == Reject(RejectReason.GROUP_NOT_ALLOWED)

    def test_rejects_when_required_groups_but_no_identity(self) -> None:
        """Without directory data nobody is in a required group."""
        pol = _policy(require_groups=frozenset({"vpn-users"}))
        result = login.after_password(PrimaryAccept(ATTRS), pol, username="alice")
        assert result == Reject(RejectReason.GROUP_NOT_ALLOWED)

    def test_member_of_required_group_goes_on(self) -> None:
        """A member of a required group continues to the second factor."""
        pol = _policy(require_groups=frozenset({"vpn-users"}))
        assert login.after_password(_with_groups("vpn-users"), pol, username="alice") is None

    def test_exempt_user_is_accepted_with_attributes(self) -> None:
        """An exempt user skips the second factor, keeping the primary's attributes."""
        pol = _policy(exempt_users=frozenset({"alice"}))
        result = login.after_password(_with_groups(), pol, username="alice")
        assert result == Accept(AcceptReason.EXEMPT, ATTRS)

    def test_exempt_group_member_is_accepted(self) -> None:
        """A member of an exempt group skips the second factor."""
        pol = _policy(exempt_groups=frozenset({"break-glass"}))
        result = login.after_password(_with_groups("break-glass"), pol, username="alice")
        assert result == Accept(AcceptReason.EXEMPT, ATTRS)

    def test_exemption_does_not_override_required_groups(self) -> None:
        """An exempt user outside the required groups is still refused."""
        pol = _policy(exempt_users=frozenset({"alice"}), require_groups=frozenset({"vpn"}))
        result = login.after_password(_with_groups(), pol, username="alice")
        assert result == Reject(RejectReason.GROUP_NOT_ALLOWED)

    def test_mode_none_accepts_on_the_password(self) -> None:
        """mode none: the password alone decides."""
        result = login.after_password(_with_groups(), _policy(mode=Mode.NONE), username="alice")
        assert result == Accept(AcceptReason.PRIMARY_ONLY, ATTRS)


class TestRelayUpstream:
    def test_record_maps_our_state_to_the_upstreams(self) -> None:
        """The relayed challenge stores the upstream State; the NAS sees ours."""
        issue = upstream.relay(
            PrimaryChallenge(b"their-state", "PIN?"),
            _policy(),
            username="alice",
            now=NOW,
            state=STATE,
        )
        assert issue.record.upstream_state == b"their-state"
        assert issue.record.factor is Factor.UPSTREAM
        assert issue.reply == ChallengeReply(state=STATE, prompt="PIN?")
        assert issue.key == hashlib.sha256(STATE).hexdigest()


class TestAfterEnrolment:
    def test_enrolled_user_goes_on_to_the_second_factor(self) -> None:
        """A user with a token must give a code."""
        assert login.after_enrolment(ALICE, (Factor.TOTP,), _policy(), ATTRS) is None

    def test_rejects_disabled_user(self) -> None:
        """A disabled user is rejected even with a token."""
        user = User(user_id="u1", username="alice", disabled=True, tokens=(TOKEN,))
        result = login.after_enrolment(user, (Factor.TOTP,), _policy(), ATTRS)
        assert result == Reject(RejectReason.USER_DISABLED)

    @pytest.mark.parametrize(
        "user", [None, User(user_id="u2", username="bob")], ids=["missing", "no-token"]
    )
    def test_rejects_unenrolled_user_by_default(self, user: User | None) -> None:
        """Without a factor the default answer is Reject(not_enrolled)."""
        assert login.after_enrolment(user, (), _policy(), ATTRS) == Reject(
            RejectReason.NOT_ENROLLED
        )

    def test_user_without_a_usable_factor_is_unenrolled(self) -> None:
        """A phone-only user at a client that allows only the app counts as not enrolled."""
        assert login.after_enrolment(ALICE, (), _policy(), ATTRS) == Reject(
            RejectReason.NOT_ENROLLED
        )

    def test_accepts_unenrolled_user_when_client_allows(self) -> None:
        """unenrolled = accept passes the primary's attributes through."""
        result = login.after_enrolment(None, (), _policy(unenrolled=Unenrolled.ACCEPT), ATTRS)
        assert result == Accept(AcceptReason.UNENROLLED_ALLOWED, ATTRS)


class TestIssueChallenge:
    def test_record_keeps_user_client_attributes_and_expiry(self) -> None:
        """The stored record names the user and NAS and keeps the reply attributes."""
        issue = challenges.issue_challenge(ALICE, _policy(), ATTRS, now=NOW, state=STATE)
        assert issue.record == _record()
        assert issue.ttl == 300.0

    def test_key_is_the_hash_of_the_state_never_the_state(self) -> None:
        """The store key is SHA-256(State) so the State itself is stored nowhere."""
        issue = challenges.issue_challenge(ALICE, _policy(), ATTRS, now=NOW, state=STATE)
        assert issue.key == hashlib.sha256(STATE).hexdigest()
        assert STATE.hex() not in issue.key

    def test_reply_carries_state_and_prompt_with_digits(self) -> None:
        """The Access-Challenge carries the State and a prompt naming the code length."""
        issue = challenges.issue_challenge(
            ALICE, _policy(prompt="Code ({digits} digits)?"), ATTRS, now=NOW, state=STATE
        )
        assert issue.reply == ChallengeReply(state=STATE, prompt="Code (6 digits)?")

    def test_refuses_short_state(self) -> None:
        """A State under 128 bits is a programming error."""
        with pytest.raises(ValueError, match="128"):
            challenges.issue_challenge(ALICE, _policy(), ATTRS, now=NOW, state=b"short")


class TestCheckPending:
    def test_usable_record_goes_on(self) -> None:
        """Same user, same client, not expired: check the code."""
        assert login.check_pending(_record(), username="alice", client="vpn", now=NOW + 10) is None

    def test_rejects_missing_record(self) -> None:
        """An unknown State (expired in the store, used, or forged) is rejected."""
        result = login.check_pending(None, username="alice", client="vpn", now=NOW)
        assert result == Reject(RejectReason.UNKNOWN_STATE)

    def test_rejects_expired_record(self) -> None:
        """A record past its expiry is refused even if the store still returned it."""
        result = login.check_pending(_record(), username="alice", client="vpn", now=NOW + 300)
        assert result == Reject(RejectReason.UNKNOWN_STATE)

    @pytest.mark.parametrize(
        ("username", "client"),
        [("mallory", "vpn"), ("alice", "other")],
        ids=["other-user", "other-client"],
    )
    def test_rejects_state_of_another_user_or_client(self, username: str, client: str) -> None:
        """A State only finishes the login of the user and NAS it was issued to."""
        result = login.check_pending(_record(), username=username, client=client, now=NOW)
        assert result == Reject(RejectReason.STATE_MISMATCH)


class TestAfterCode:
    def test_right_code_accepts_with_kept_attributes(self) -> None:
        """The attributes from round one come back on the Accept."""
        assert login.after_right_code(_record()) == Accept(AcceptReason.MFA_OK, ATTRS)

    def test_right_code_rejects_when_another_request_consumed_the_state(self) -> None:
        """If the one-shot take found nothing, another request won: reject this one."""
        assert login.after_right_code(None) == Reject(RejectReason.UNKNOWN_STATE)

    @pytest.mark.parametrize("attempts", [1, 2])
    def test_wrong_code_challenges_again_while_attempts_remain(self, attempts: int) -> None:
        """Below max_attempts the user is asked again with the same State."""
        result = login.after_wrong_code(
            attempts, _policy(retry_prompt="left {attempts_left}"), state=STATE, digits=6
        )
        assert result == ChallengeReply(
            state=STATE, prompt=f"left {3 - attempts}", retry_reason=RejectReason.BAD_CODE
        )

    def test_wrong_code_rejects_on_last_attempt(self) -> None:
        """At max_attempts the login is rejected as too_many_attempts."""
        result = login.after_wrong_code(3, _policy(), state=STATE, digits=6)
        assert result == Reject(RejectReason.TOO_MANY_ATTEMPTS)

    def test_replayed_code_on_last_attempt_keeps_its_reason(self) -> None:
        """A replayed code on the last attempt is logged as code_replayed."""
        result = login.after_wrong_code(
            3, _policy(), state=STATE, digits=6, reason=RejectReason.CODE_REPLAYED
        )
        assert result == Reject(RejectReason.CODE_REPLAYED)

    def test_wrong_code_rejects_when_record_vanished(self) -> None:
        """No record to count on (expired meanwhile) means reject."""
        result = login.after_wrong_code(None, _policy(), state=STATE, digits=6)
        assert result == Reject(RejectReason.UNKNOWN_STATE)


class TestAppended:
    def test_accepts_fresh_matching_code(self) -> None:
        """Right code, first use: accept with the primary's attributes."""
        assert login.after_appended_code(True, True, ATTRS) == Accept(AcceptReason.MFA_OK, ATTRS)

    def test_rejects_wrong_code(self) -> None:
        """Append mode has no second chance: a wrong code rejects."""
        assert login.after_appended_code(False, False, ATTRS) == Reject(RejectReason.BAD_CODE)

    def test_rejects_replayed_code(self) -> None:
        """A code already used for this token and step is refused."""
        assert login.after_appended_code(True, False, ATTRS) == Reject(RejectReason.CODE_REPLAYED)


def test_state_id_is_a_short_hash() -> None:
    """Logs name a State by 8 hex digits of its hash, never the State itself."""
    assert challenges.state_id(STATE) == hashlib.sha256(STATE).hexdigest()[:8]
