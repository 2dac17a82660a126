"""The login engine of core/login.py, driven row by row with scripted effect results.

Every test builds one :class:`Login` at a fixed ``NOW`` with fixed random values, answers the
effects it asks for from a script (``tests.support.script``) and looks at the decision, the
effects asked for and the audit record. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from mfa_radius.core.audit import Notice
from mfa_radius.core.call_result import CallResult
from mfa_radius.core.challenges import challenge_key, state_id
from mfa_radius.core.effects import (
    AddAttempt,
    Backend,
    CheckPassword,
    Count,
    Effect,
    Failed,
    FindUser,
    Forget,
    GetChallenge,
    MarkOnce,
    PeekCount,
    PutChallenge,
    Send,
    TakeChallenge,
    Uncount,
    WaitResult,
)
from mfa_radius.core.factors.approve import APPROVE_MARGIN
from mfa_radius.core.factors.sent_code import code_hash
from mfa_radius.core.limits import DAY
from mfa_radius.core.login import Decision, Fresh, Login, Settings
from mfa_radius.core.messages import ApproveCall, CodeCall, CodeText, Delivery
from mfa_radius.core.model import (
    Accept,
    AcceptReason,
    AuthAttempt,
    ChallengeReply,
    Factor,
    FailMode,
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
from mfa_radius.core.otp import hotp, timecode
from mfa_radius.core.policy import ClientPolicy
from tests.support.script import Answer, limits_given_back, limits_pass, run, run_then_expire

NOW = 1_700_000_000.0
DEADLINE = NOW + 9.0
FRESH = Fresh(state=b"S" * 16, digits="123456789012", token="tok")
STATE = FRESH.state
KEY = challenge_key(STATE)
OLD_STATE = b"O" * 16
"""The State of a challenge issued by an earlier request (round two)."""
OLD_KEY = challenge_key(OLD_STATE)
PASSWORD = b"hunter2-secret"
PHONE = "+14155550123"
CODE_KEY = b"k" * 32
SENT = "123456"
"""The code a text or call carries: the first six of FRESH.digits."""
TOKEN = TotpToken(token_id="app", secret=b"t" * 20)
ATTRS = ((25, b"class-a"), (11, b"vpn-users"))
ALICE = User(
    user_id="u1",
    username="alice",
    display_name="Alice Example",
    email="alice@example.org",
    phone=PHONE,
    tokens=(TOKEN,),
)
ACCEPTED = PrimaryAccept(attributes=ATTRS)
POLICY = ClientPolicy(name="vpn")
PHONES = (Factor.SMS, Factor.VOICE, Factor.TOTP)
PHONE_POLICY = ClientPolicy(
    name="vpn",
    factors=PHONES,
    sms_sender="+15005550006",
    voice_caller_id="+15005550007",
    organisation="Example Org",
)
APPROVE_POLICY = replace(PHONE_POLICY, mode=Mode.APPROVE, factors=(Factor.APPROVE,))
SETTINGS = Settings(code_key=CODE_KEY, can_send=True, can_approve=True)

CHECK = CheckPassword(PASSWORD)
FIND = FindUser("alice")
PEEK = PeekCount("lock:alice")
FORGET = Forget(("fail:alice",))
FAIL_COUNT = Count("fail:alice", 86_400.0)
DELIVERED = Delivery("SM1")
PRIMARY_DOWN = Failed(Backend.PRIMARY, "timeout")
ENROLMENT_DOWN = Failed(Backend.ENROLMENT, "OperationalError")
STORE_DOWN = Failed(Backend.STORE, "ConnectionError")
FULL = Failed(Backend.STORE, "full", full=True)
"""A store at capacity refusing a new entry (``errors.StoreFull``)."""
DELIVERY_DOWN = Failed(Backend.DELIVERY, "503")
REFUSED = Failed(Backend.DELIVERY, "invalid number", permanent=True, code=21211)

TOTP_RECORD = PendingChallenge(
    username="alice",
    client="vpn",
    factor=Factor.TOTP,
    created=NOW - 30,
    expires=NOW + 270,
    reply_attributes=ATTRS,
    options=(Factor.TOTP,),
)
SMS_RECORD = replace(
    TOTP_RECORD,
    factor=Factor.SMS,
    code_hash=code_hash(CODE_KEY, OLD_STATE, SENT),
    phone=PHONE,
    options=PHONES,
)
UPSTREAM_RECORD = PendingChallenge(
    username="alice",
    client="vpn",
    factor=Factor.UPSTREAM,
    created=NOW - 30,
    expires=NOW + 270,
    upstream_state=b"upstream-1",
)

TOTP_PROMPT = "Enter the 6-digit code from your authenticator app"
SMS_PROMPT = "Enter the 6-digit code sent by text message to *********23 (or type 2 for a call)"
VOICE_PROMPT = "Enter the 6-digit code from the call to *********23 (or type 1 for a text message)"
RETRY_2 = "Wrong code, 2 attempt(s) left. Enter the 6-digit code"


def _login(
    policy: ClientPolicy = POLICY,
    *,
    password: bytes | None = PASSWORD,
    state: bytes | None = None,
    username: str = "alice",
    client: str = "vpn",
    settings: Settings = SETTINGS,
) -> Login:
    attempt = AuthAttempt(
        username=username,
        raw_username=username,
        password=password,
        state=state,
        client=client,
        src_ip="192.0.2.1",
    )
    return Login(attempt, policy, settings, now=NOW, deadline=DEADLINE, fresh=FRESH)


def _answer(
    code: str,
    *,
    policy: ClientPolicy = POLICY,
    username: str = "alice",
    client: str = "vpn",
    settings: Settings = SETTINGS,
) -> Login:
    """A round-two request answering OLD_STATE's challenge with ``code``."""
    return _login(
        policy,
        password=code.encode(),
        state=OLD_STATE,
        username=username,
        client=client,
        settings=settings,
    )


def _totp(at: float = NOW) -> str:
    return hotp(TOKEN.secret, timecode(at, TOKEN.time_step))


RIGHT = _totp()
WRONG = "000000"
assert WRONG != RIGHT  # the fixed instant must not make the wrong code right


def _replay_mark(at: float = NOW) -> MarkOnce:
    step = timecode(at, 30)
    return MarkOnce(f"totp:app:{step}", (step + 3) * 30 - NOW)


def _password_ok(
    user: User | None = ALICE, primary: PrimaryAccept = ACCEPTED, password: bytes = PASSWORD
) -> list[Answer]:
    """Password right, user found, not locked out."""
    return [(CheckPassword(password), primary), (FIND, user), (PEEK, 0)]


def _limits() -> list[Answer]:
    """Every send limit passed for alice at PHONE."""
    return limits_pass("alice", PHONE, NOW, "US")


def _given_back() -> list[Answer]:
    """Every send counter of alice at PHONE taken back after a failed send."""
    return limits_given_back("alice", PHONE, NOW, "US")


def _text() -> Send:
    body = f"Example Org sign-in code: {SENT}. Valid for 5 minutes."
    return Send(CodeText(to=PHONE, body=body, sender="+15005550006"))


def _call() -> Send:
    return Send(
        CodeCall(
            to=PHONE,
            code=SENT,
            organisation="Example Org",
            language="en-US",
            caller_id="+15005550007",
        )
    )


def _approve_call() -> Send:
    return Send(
        ApproveCall(
            to=PHONE,
            token="tok",
            organisation="Example Org",
            language="en-US",
            caller_id="+15005550007",
            gather_seconds=15,
        )
    )


WAIT = WaitResult("tok", until=DEADLINE - APPROVE_MARGIN)


def _types(seen: list[Effect[Any]]) -> list[type]:
    return [type(e) for e in seen]


def _safe(policy: ClientPolicy = POLICY) -> ClientPolicy:
    return replace(policy, fail_mode=FailMode.SAFE)


class TestRoundOne:
    @pytest.mark.parametrize("password", [None, b""], ids=["absent", "empty"])
    def test_rejects_without_any_effect_when_the_password_is_missing(
        self, password: bytes | None
    ) -> None:
        """No or an empty User-Password is refused before the primary is asked."""
        decision = _login(password=password).start()
        assert isinstance(decision, Decision)
        assert decision.outcome == Reject(RejectReason.MISSING_PASSWORD)

    @pytest.mark.parametrize(
        "reason",
        [RejectReason.BAD_PASSWORD, RejectReason.UNKNOWN_USER, RejectReason.PRIMARY_REJECTED],
        ids=["bad-password", "unknown-user", "primary-rejected"],
    )
    def test_rejects_with_the_primarys_reason_and_sends_nothing_when_the_password_is_wrong(
        self, reason: RejectReason
    ) -> None:
        """A wrong password ends the login at once: no lookup, no code, no message."""
        decision, seen = run(_login(PHONE_POLICY), [(CHECK, PrimaryReject(reason, "Denied"))])
        assert decision.outcome == Reject(reason)
        assert seen == [CHECK]

    def test_passes_the_reply_message_on_when_the_profile_allows_it(self) -> None:
        """The primary's Reply-Message reaches the NAS only with pass_reply_message."""
        policy = replace(POLICY, pass_reply_message=True)
        decision, _ = run(
            _login(policy), [(CHECK, PrimaryReject(RejectReason.BAD_PASSWORD, "Expired"))]
        )
        assert decision.outcome == Reject(RejectReason.BAD_PASSWORD, "Expired")

    def test_rejects_when_outside_require_groups(self) -> None:
        """A user in none of require_groups is refused after the password, before any lookup."""
        policy = replace(POLICY, require_groups=frozenset({"vpn"}))
        primary = PrimaryAccept(identity=Identity(groups=frozenset({"staff"})))
        decision, seen = run(_login(policy), [(CHECK, primary)])
        assert decision.outcome == Reject(RejectReason.GROUP_NOT_ALLOWED)
        assert seen == [CHECK]

    @pytest.mark.parametrize(
        ("policy", "reason"),
        [
            (replace(POLICY, exempt_users=frozenset({"alice"})), AcceptReason.EXEMPT),
            (replace(POLICY, exempt_groups=frozenset({"ops"})), AcceptReason.EXEMPT),
            (replace(POLICY, mode=Mode.NONE), AcceptReason.PRIMARY_ONLY),
        ],
        ids=["exempt-user", "exempt-group", "mode-none"],
    )
    def test_accepts_with_the_primarys_attributes_without_a_second_factor(
        self, policy: ClientPolicy, reason: AcceptReason
    ) -> None:
        """Exempt users and groups and mode none are accepted on the password alone."""
        primary = PrimaryAccept(attributes=ATTRS, identity=Identity(groups=frozenset({"ops"})))
        decision, seen = run(_login(policy), [(CHECK, primary)])
        assert decision.outcome == Accept(reason, ATTRS)
        assert seen == [CHECK]

    def test_rejects_a_disabled_user_before_the_lockout_is_read(self) -> None:
        """A disabled user is refused right after the lookup."""
        disabled = replace(ALICE, disabled=True)
        decision, seen = run(_login(), [(CHECK, ACCEPTED), (FIND, disabled)])
        assert decision.outcome == Reject(RejectReason.USER_DISABLED)
        assert seen == [CHECK, FIND]

    @pytest.mark.parametrize(
        ("user", "unenrolled", "outcome"),
        [
            (None, Unenrolled.REJECT, Reject(RejectReason.NOT_ENROLLED)),
            (None, Unenrolled.ACCEPT, Accept(AcceptReason.UNENROLLED_ALLOWED, ATTRS)),
            (
                replace(ALICE, tokens=()),
                Unenrolled.REJECT,
                Reject(RejectReason.NOT_ENROLLED),
            ),
            (
                replace(ALICE, tokens=()),
                Unenrolled.ACCEPT,
                Accept(AcceptReason.UNENROLLED_ALLOWED, ATTRS),
            ),
        ],
        ids=["unknown-reject", "unknown-accept", "no-usable-reject", "no-usable-accept"],
    )
    def test_decides_by_the_unenrolled_setting_when_the_user_has_no_usable_factor(
        self, user: User | None, unenrolled: Unenrolled, outcome: Accept | Reject
    ) -> None:
        """A user not in the database, or without a factor this client allows, gets unenrolled."""
        policy = replace(POLICY, unenrolled=unenrolled)
        decision, seen = run(_login(policy), [(CHECK, ACCEPTED), (FIND, user)])
        assert decision.outcome == outcome
        assert seen == [CHECK, FIND]

    def test_rejects_without_sending_when_locked_out(self) -> None:
        """A locked-out user is refused after the password and before any code is sent."""
        decision, seen = run(_login(PHONE_POLICY), [(CHECK, ACCEPTED), (FIND, ALICE), (PEEK, 1)])
        assert decision.outcome == Reject(RejectReason.LOCKED_OUT)
        assert seen == [CHECK, FIND, PEEK]

    def test_challenges_for_the_app_code_and_stores_the_record_under_the_fresh_state(
        self,
    ) -> None:
        """TOTP first: nothing is sent, the record goes under SHA-256(State), then the challenge."""
        record = PendingChallenge(
            username="alice",
            client="vpn",
            factor=Factor.TOTP,
            created=NOW,
            expires=NOW + 300,
            reply_attributes=ATTRS,
            options=(Factor.TOTP,),
        )
        put = PutChallenge(KEY, record, 300.0)
        decision, seen = run(_login(), [*_password_ok(), (put, None)])
        assert decision.outcome == ChallengeReply(state=STATE, prompt=TOTP_PROMPT)
        assert seen == [CHECK, FIND, PEEK, put]

    def test_texts_the_code_only_after_the_password_and_stores_its_hash(self) -> None:
        """SMS first: the text goes after password, lookup and lockout; the record keeps a hash."""
        record = PendingChallenge(
            username="alice",
            client="vpn",
            factor=Factor.SMS,
            created=NOW,
            expires=NOW + 300,
            reply_attributes=ATTRS,
            code_hash=code_hash(CODE_KEY, STATE, SENT),
            phone=PHONE,
            options=PHONES,
        )
        put = PutChallenge(KEY, record, 300.0)
        decision, seen = run(
            _login(PHONE_POLICY), [*_password_ok(), *_limits(), (_text(), DELIVERED), (put, None)]
        )
        assert decision.outcome == ChallengeReply(state=STATE, prompt=SMS_PROMPT)
        assert seen[:3] == [CHECK, FIND, PEEK]
        assert seen[-2:] == [_text(), put]

    def test_texts_the_directory_number_when_the_database_has_none(self) -> None:
        """Without a number in the database, the directory's is normalised and used."""
        policy = replace(PHONE_POLICY, default_region="US")
        primary = PrimaryAccept(attributes=ATTRS, identity=Identity(phones=("(415) 555-0123",)))
        user = replace(ALICE, phone="")
        decision, seen = run(
            _login(policy),
            [*_password_ok(user, primary), *_limits(), (_text(), DELIVERED), (PutChallenge, None)],
        )
        assert isinstance(decision.outcome, ChallengeReply)
        put = seen[-1]
        assert isinstance(put, PutChallenge)
        assert put.record.phone == PHONE

    @pytest.mark.parametrize(
        ("user", "policy"),
        [
            (replace(ALICE, phone="12345"), PHONE_POLICY),
            (ALICE, replace(PHONE_POLICY, allowed_regions=frozenset({"DE"}))),
        ],
        ids=["invalid-number", "region-not-allowed"],
    )
    def test_falls_back_to_the_app_when_the_number_cannot_be_used(
        self, user: User, policy: ClientPolicy
    ) -> None:
        """An invalid number or one outside allowed_regions is never texted; TOTP is asked."""
        decision, seen = run(_login(policy), [*_password_ok(user), (PutChallenge, None)])
        assert decision.outcome == ChallengeReply(state=STATE, prompt=TOTP_PROMPT)
        assert Send not in _types(seen)

    def test_rejects_as_not_enrolled_when_no_usable_factor_is_typed_at_a_prompt(self) -> None:
        """Challenge mode with only an approve call usable has nothing to prompt for."""
        policy = replace(PHONE_POLICY, factors=(Factor.APPROVE,))
        decision, seen = run(_login(policy), _password_ok())
        assert decision.outcome == Reject(RejectReason.NOT_ENROLLED)
        assert seen == [CHECK, FIND, PEEK]

    def test_rejects_without_storing_when_a_send_limit_is_hit(self) -> None:
        """A send limit refuses the login; no text is sent and no challenge stored."""
        decision, seen = run(
            _login(PHONE_POLICY),
            [*_password_ok(), (MarkOnce("send:cooldown:alice", 20.0), False)],
        )
        assert decision.outcome == Reject(RejectReason.SEND_LIMITED)
        assert decision.audit.limit == "cooldown"
        assert seen[-1] == MarkOnce("send:cooldown:alice", 20.0)

    def test_rejects_without_storing_when_the_provider_refuses_the_number(self) -> None:
        """A refused number is delivery_rejected, even in fail mode safe, and nothing is stored."""
        decision, seen = run(
            _login(_safe(PHONE_POLICY)),
            [*_password_ok(), *_limits(), (_text(), REFUSED), *_given_back()],
        )
        assert decision.outcome == Reject(RejectReason.DELIVERY_REJECTED)
        assert PutChallenge not in _types(seen)


class TestAppendMode:
    APPEND = replace(POLICY, mode=Mode.APPEND)

    def test_accepts_when_the_appended_code_is_right_and_first_used(self) -> None:
        """The primary gets the password alone; a right code with a fresh mark accepts."""
        login = _login(self.APPEND, password=PASSWORD + b"," + RIGHT.encode())
        decision, seen = run(login, [*_password_ok(), (_replay_mark(), True)])
        assert decision.outcome == Accept(AcceptReason.MFA_OK, ATTRS)
        assert seen == [CHECK, FIND, PEEK, _replay_mark()]
        assert decision.audit.factor == "totp"

    def test_rejects_without_marking_when_the_appended_code_is_wrong(self) -> None:
        """A wrong code is bad_code and no replay mark is spent."""
        login = _login(self.APPEND, password=PASSWORD + b"," + WRONG.encode())
        decision, seen = run(login, _password_ok())
        assert decision.outcome == Reject(RejectReason.BAD_CODE)
        assert seen == [CHECK, FIND, PEEK]

    def test_rejects_when_the_appended_code_was_already_used(self) -> None:
        """A right code whose replay mark exists is code_replayed."""
        login = _login(self.APPEND, password=PASSWORD + b"," + RIGHT.encode())
        decision, _ = run(login, [*_password_ok(), (_replay_mark(), False)])
        assert decision.outcome == Reject(RejectReason.CODE_REPLAYED)

    def test_checks_the_whole_password_and_rejects_the_format_when_no_code_is_appended(
        self,
    ) -> None:
        """Without an appended code the primary sees it all and the login is bad_code_format."""
        decision, seen = run(_login(self.APPEND), _password_ok())
        assert decision.outcome == Reject(RejectReason.BAD_CODE_FORMAT)
        assert seen == [CHECK, FIND, PEEK]

    @pytest.mark.parametrize(
        ("delimiter", "password", "primary_gets"),
        [
            (",", b"pa,ss," + RIGHT.encode(), b"pa,ss"),
            ("", b"hunter2" + RIGHT.encode(), b"hunter2"),
            ("|", b"hunter2|" + RIGHT.encode(), b"hunter2"),
        ],
        ids=["last-delimiter", "no-delimiter", "other-delimiter"],
    )
    def test_splits_the_code_off_at_the_last_delimiter(
        self, delimiter: str, password: bytes, primary_gets: bytes
    ) -> None:
        """The password may contain the delimiter: the code is after its last occurrence."""
        policy = replace(self.APPEND, append_delimiter=delimiter)
        decision, seen = run(
            _login(policy, password=password),
            [*_password_ok(password=primary_gets), (_replay_mark(), True)],
        )
        assert decision.outcome == Accept(AcceptReason.MFA_OK, ATTRS)
        assert seen[0] == CheckPassword(primary_gets)

    def test_rejects_before_checking_the_code_when_locked_out(self) -> None:
        """A locked-out user's appended code is not even looked at."""
        login = _login(self.APPEND, password=PASSWORD + b"," + RIGHT.encode())
        decision, seen = run(login, [(CHECK, ACCEPTED), (FIND, ALICE), (PEEK, 2)])
        assert decision.outcome == Reject(RejectReason.LOCKED_OUT)
        assert seen == [CHECK, FIND, PEEK]


class TestApproveMode:
    def test_accepts_and_clears_failures_when_the_user_presses_1(self) -> None:
        """The call goes after the password, the wait ends a margin before the deadline."""
        decision, seen = run(
            _login(APPROVE_POLICY),
            [
                *_password_ok(),
                *_limits(),
                (_approve_call(), DELIVERED),
                (WAIT, CallResult.APPROVE.value),
                (FORGET, None),
            ],
        )
        assert decision.outcome == Accept(AcceptReason.MFA_OK, ATTRS)
        assert seen[:3] == [CHECK, FIND, PEEK]
        assert seen[-3:] == [_approve_call(), WAIT, FORGET]
        assert WAIT.until == DEADLINE - APPROVE_MARGIN

    def test_rejects_and_locks_the_user_when_fraud_is_reported(self) -> None:
        """Pressing 9 locks the user for the longest lockout; failures are not cleared."""
        lock = Count("lock:alice", 3600.0)
        decision, seen = run(
            _login(APPROVE_POLICY),
            [
                *_password_ok(),
                *_limits(),
                (_approve_call(), DELIVERED),
                (WAIT, CallResult.FRAUD.value),
                (lock, 1),
            ],
        )
        assert decision.outcome == Reject(RejectReason.FRAUD_REPORTED)
        assert seen[-1] == lock
        assert decision.audit.notices == (Notice("fraud_reported"),)

    @pytest.mark.parametrize("failed", [FULL, STORE_DOWN], ids=["full", "down"])
    @pytest.mark.parametrize("fail_mode", [FailMode.SECURE, FailMode.SAFE], ids=["secure", "safe"])
    def test_rejects_a_reported_fraud_even_when_the_lock_cannot_be_written(
        self, failed: Failed, fail_mode: FailMode
    ) -> None:
        """A fraud report refuses the login whatever the store does: never a fail-safe accept."""
        decision, _ = run(
            _login(replace(APPROVE_POLICY, fail_mode=fail_mode)),
            [
                *_password_ok(),
                *_limits(),
                (_approve_call(), DELIVERED),
                (WAIT, CallResult.FRAUD.value),
                (Count("lock:alice", 3600.0), failed),
            ],
        )
        assert decision.outcome == Reject(RejectReason.FRAUD_REPORTED)
        assert [n.event for n in decision.audit.notices] == ["fraud_reported", "fraud_lock_failed"]

    @pytest.mark.parametrize(
        ("result", "reason"),
        [
            (CallResult.DENY.value, RejectReason.APPROVAL_DENIED),
            (None, RejectReason.APPROVAL_TIMEOUT),
        ],
        ids=["denied", "no-key-in-time"],
    )
    def test_rejects_when_the_user_does_not_approve(
        self, result: str | None, reason: RejectReason
    ) -> None:
        """Another key or no key within the wait refuses; nothing else is touched."""
        decision, seen = run(
            _login(APPROVE_POLICY),
            [*_password_ok(), *_limits(), (_approve_call(), DELIVERED), (WAIT, result)],
        )
        assert decision.outcome == Reject(reason)
        assert seen[-1] == WAIT

    def test_rejects_as_not_enrolled_when_the_user_has_no_number(self) -> None:
        """A user with only an app cannot be called: not_enrolled, and no call is placed."""
        policy = replace(APPROVE_POLICY, factors=(Factor.TOTP, Factor.APPROVE))
        decision, seen = run(_login(policy), _password_ok(replace(ALICE, phone="")))
        assert decision.outcome == Reject(RejectReason.NOT_ENROLLED)
        assert seen == [CHECK, FIND, PEEK]

    def test_rejects_without_waiting_when_the_number_is_refused(self) -> None:
        """A refused number is delivery_rejected with the provider's code, and no wait."""
        decision, seen = run(
            _login(_safe(APPROVE_POLICY)),
            [*_password_ok(), *_limits(), (_approve_call(), REFUSED), *_given_back()],
        )
        assert decision.outcome == Reject(RejectReason.DELIVERY_REJECTED)
        assert decision.audit.delivery_code == 21211
        assert WaitResult not in _types(seen)

    def test_rejects_without_calling_when_a_send_limit_is_hit(self) -> None:
        """A send limit refuses the login before any call is placed."""
        decision, seen = run(
            _login(APPROVE_POLICY),
            [*_password_ok(), *_limits()[:1], (Count("send:user:alice", 3600.0), 6)],
        )
        assert decision.outcome == Reject(RejectReason.SEND_LIMITED)
        assert decision.audit.limit == "user_send_limit"
        assert Send not in _types(seen)


class TestRoundTwo:
    def test_accepts_with_round_one_attributes_when_the_app_code_is_right(self) -> None:
        """A right first-used code consumes the record exactly once, then clears failures."""
        decision, seen = run(
            _answer(RIGHT),
            [
                (GetChallenge(OLD_KEY), TOTP_RECORD),
                (FIND, ALICE),
                (_replay_mark(), True),
                (TakeChallenge(OLD_KEY), TOTP_RECORD),
                (FORGET, None),
            ],
        )
        assert decision.outcome == Accept(AcceptReason.MFA_OK, ATTRS)
        assert seen == [GetChallenge(OLD_KEY), FIND, _replay_mark(), TakeChallenge(OLD_KEY), FORGET]

    def test_accepts_and_clears_failures_when_the_sent_code_is_right(self) -> None:
        """A right texted code matches before TOTP is tried, and clears the wrong-code counter."""
        decision, seen = run(
            _answer(SENT),
            [
                (GetChallenge(OLD_KEY), SMS_RECORD),
                (FIND, ALICE),
                (TakeChallenge(OLD_KEY), SMS_RECORD),
                (FORGET, None),
            ],
        )
        assert decision.outcome == Accept(AcceptReason.MFA_OK, ATTRS)
        assert seen[-2:] == [TakeChallenge(OLD_KEY), FORGET]

    def test_accepts_the_app_code_when_a_text_was_sent(self) -> None:
        """A user who was texted may still type their app's code."""
        decision, seen = run(
            _answer(RIGHT),
            [
                (GetChallenge(OLD_KEY), SMS_RECORD),
                (FIND, ALICE),
                (_replay_mark(), True),
                (TakeChallenge(OLD_KEY), SMS_RECORD),
                (FORGET, None),
            ],
        )
        assert decision.outcome == Accept(AcceptReason.MFA_OK, ATTRS)
        assert seen.count(TakeChallenge(OLD_KEY)) == 1

    def test_accepts_a_code_typed_with_surrounding_white_space(self) -> None:
        """The answer is stripped before it is compared."""
        decision, _ = run(
            _answer(f" {SENT}\n"),
            [
                (GetChallenge(OLD_KEY), SMS_RECORD),
                (FIND, ALICE),
                (TakeChallenge(OLD_KEY), SMS_RECORD),
                (FORGET, None),
            ],
        )
        assert decision.outcome == Accept(AcceptReason.MFA_OK, ATTRS)

    def test_rejects_without_clearing_when_another_request_took_the_record_first(self) -> None:
        """A right code loses to a request that consumed the State first (one-shot take)."""
        decision, seen = run(
            _answer(RIGHT),
            [
                (GetChallenge(OLD_KEY), TOTP_RECORD),
                (FIND, ALICE),
                (_replay_mark(), True),
                (TakeChallenge(OLD_KEY), None),
            ],
        )
        assert decision.outcome == Reject(RejectReason.UNKNOWN_STATE)
        assert seen[-1] == TakeChallenge(OLD_KEY)

    @pytest.mark.parametrize(
        ("record", "username", "client", "reason"),
        [
            (None, "alice", "vpn", RejectReason.UNKNOWN_STATE),
            (replace(TOTP_RECORD, expires=NOW), "alice", "vpn", RejectReason.UNKNOWN_STATE),
            (TOTP_RECORD, "bob", "vpn", RejectReason.STATE_MISMATCH),
            (TOTP_RECORD, "alice", "wifi", RejectReason.STATE_MISMATCH),
        ],
        ids=["unknown", "expired", "other-user", "other-client"],
    )
    def test_rejects_without_a_lookup_when_the_state_is_not_this_requests(
        self, record: PendingChallenge | None, username: str, client: str, reason: RejectReason
    ) -> None:
        """A missing, expired or foreign State is refused before the user is looked up."""
        login = _answer(RIGHT, username=username, client=client)
        decision, seen = run(login, [(GetChallenge(OLD_KEY), record)])
        assert decision.outcome == Reject(reason)
        assert seen == [GetChallenge(OLD_KEY)]

    @pytest.mark.parametrize(
        ("user", "reason"),
        [
            (replace(ALICE, disabled=True), RejectReason.USER_DISABLED),
            (None, RejectReason.UNKNOWN_USER),
        ],
        ids=["disabled", "gone"],
    )
    def test_takes_the_challenge_and_rejects_when_the_user_is_disabled_or_gone(
        self, user: User | None, reason: RejectReason
    ) -> None:
        """A user disabled or deleted since round one loses the challenge; no code is checked."""
        decision, seen = run(
            _answer(RIGHT),
            [(GetChallenge(OLD_KEY), TOTP_RECORD), (FIND, user), (TakeChallenge(OLD_KEY), None)],
        )
        assert decision.outcome == Reject(reason)
        assert seen == [GetChallenge(OLD_KEY), FIND, TakeChallenge(OLD_KEY)]

    def test_challenges_again_when_a_wrong_code_leaves_attempts(self) -> None:
        """A wrong code counts a failure and an attempt, and the same State is challenged again."""
        decision, seen = run(
            _answer(WRONG),
            [
                (GetChallenge(OLD_KEY), TOTP_RECORD),
                (FIND, ALICE),
                (FAIL_COUNT, 1),
                (AddAttempt(OLD_KEY), 1),
            ],
        )
        assert decision.outcome == ChallengeReply(
            state=OLD_STATE, prompt=RETRY_2, retry_reason=RejectReason.BAD_CODE
        )
        assert TakeChallenge not in _types(seen)

    def test_takes_the_challenge_and_rejects_on_the_last_wrong_attempt(self) -> None:
        """The max_attempts-th wrong code is too_many_attempts and consumes the State."""
        decision, seen = run(
            _answer(WRONG),
            [
                (GetChallenge(OLD_KEY), replace(TOTP_RECORD, attempts=2)),
                (FIND, ALICE),
                (FAIL_COUNT, 3),
                (AddAttempt(OLD_KEY), 3),
                (TakeChallenge(OLD_KEY), None),
            ],
        )
        assert decision.outcome == Reject(RejectReason.TOO_MANY_ATTEMPTS)
        assert seen[-2:] == [AddAttempt(OLD_KEY), TakeChallenge(OLD_KEY)]

    def test_rejects_without_taking_when_the_record_vanished_before_the_attempt_count(
        self,
    ) -> None:
        """A record gone by the time the attempt is counted is unknown_state; nothing to take."""
        decision, seen = run(
            _answer(WRONG),
            [
                (GetChallenge(OLD_KEY), TOTP_RECORD),
                (FIND, ALICE),
                (FAIL_COUNT, 1),
                (AddAttempt(OLD_KEY), None),
            ],
        )
        assert decision.outcome == Reject(RejectReason.UNKNOWN_STATE)
        assert seen[-1] == AddAttempt(OLD_KEY)

    def test_challenges_again_as_replayed_when_a_used_code_leaves_attempts(self) -> None:
        """A replayed code counts as a wrong one, and the retry says why."""
        decision, _ = run(
            _answer(RIGHT),
            [
                (GetChallenge(OLD_KEY), TOTP_RECORD),
                (FIND, ALICE),
                (_replay_mark(), False),
                (FAIL_COUNT, 1),
                (AddAttempt(OLD_KEY), 1),
            ],
        )
        assert decision.outcome == ChallengeReply(
            state=OLD_STATE, prompt=RETRY_2, retry_reason=RejectReason.CODE_REPLAYED
        )

    def test_takes_the_challenge_and_rejects_as_replayed_on_the_last_attempt(self) -> None:
        """A replayed code on the last attempt keeps its reason and consumes the State."""
        decision, seen = run(
            _answer(RIGHT),
            [
                (GetChallenge(OLD_KEY), replace(TOTP_RECORD, attempts=2)),
                (FIND, ALICE),
                (_replay_mark(), False),
                (FAIL_COUNT, 1),
                (AddAttempt(OLD_KEY), 3),
                (TakeChallenge(OLD_KEY), None),
            ],
        )
        assert decision.outcome == Reject(RejectReason.CODE_REPLAYED)
        assert seen[-1] == TakeChallenge(OLD_KEY)

    def test_locks_the_user_takes_the_challenge_and_rejects_when_the_threshold_is_reached(
        self,
    ) -> None:
        """The wrong code that reaches the lockout threshold locks, consumes the State, refuses."""
        lock = Count("lock:alice", 60.0)
        decision, seen = run(
            _answer(WRONG),
            [
                (GetChallenge(OLD_KEY), TOTP_RECORD),
                (FIND, ALICE),
                (FAIL_COUNT, 5),
                (lock, 1),
                (TakeChallenge(OLD_KEY), None),
            ],
        )
        assert decision.outcome == Reject(RejectReason.LOCKED_OUT)
        assert seen[-2:] == [lock, TakeChallenge(OLD_KEY)]
        assert AddAttempt not in _types(seen)
        assert decision.audit.notices == (
            Notice("user_locked", (("failures", 5), ("seconds", 60.0))),
        )

    @pytest.mark.parametrize(
        ("answer", "record"),
        [
            ("1", SMS_RECORD),
            ("2", replace(SMS_RECORD, options=(Factor.SMS, Factor.TOTP))),
            ("1", replace(TOTP_RECORD, phone=PHONE)),
        ],
        ids=["current-factor", "not-offered", "no-options"],
    )
    def test_treats_a_menu_choice_as_a_wrong_code_when_it_is_not_a_switch(
        self, answer: str, record: PendingChallenge
    ) -> None:
        """Choosing the current factor or one not offered is checked (and counted) as a code."""
        decision, seen = run(
            _answer(answer),
            [
                (GetChallenge(OLD_KEY), record),
                (FIND, ALICE),
                (FAIL_COUNT, 1),
                (AddAttempt(OLD_KEY), 1),
            ],
        )
        assert isinstance(decision.outcome, ChallengeReply)
        assert decision.outcome.retry_reason is RejectReason.BAD_CODE
        assert Send not in _types(seen)


class TestFactorSwitch:
    MARK = MarkOnce(f"sent:{OLD_KEY}:voice", 300.0)

    @pytest.mark.parametrize("answer", ["2", "call", " Voice "], ids=["digit", "word", "spaced"])
    def test_calls_once_and_stores_the_new_code_when_another_factor_is_chosen(
        self, answer: str
    ) -> None:
        """Asking for a call sends it, re-stores the record for the time left, prompts for it."""
        new_record = replace(
            SMS_RECORD, factor=Factor.VOICE, code_hash=code_hash(CODE_KEY, OLD_STATE, SENT)
        )
        put = PutChallenge(OLD_KEY, new_record, 270.0)
        decision, seen = run(
            _answer(answer, policy=PHONE_POLICY),
            [
                (GetChallenge(OLD_KEY), SMS_RECORD),
                (FIND, ALICE),
                (self.MARK, True),
                *_limits(),
                (_call(), DELIVERED),
                (put, None),
            ],
        )
        assert decision.outcome == ChallengeReply(state=OLD_STATE, prompt=VOICE_PROMPT)
        assert seen[-2:] == [_call(), put]
        assert FAIL_COUNT not in seen
        assert decision.audit.factor == "voice"

    def test_keeps_at_least_one_second_when_the_record_is_about_to_expire(self) -> None:
        """The re-stored record gets the time it has left, never less than a second."""
        record = replace(SMS_RECORD, expires=NOW + 0.5)
        decision, seen = run(
            _answer("2", policy=PHONE_POLICY),
            [
                (GetChallenge(OLD_KEY), record),
                (FIND, ALICE),
                (self.MARK, True),
                *_limits(),
                (_call(), DELIVERED),
                (PutChallenge, None),
            ],
        )
        put = seen[-1]
        assert isinstance(put, PutChallenge)
        assert put.ttl == 1.0
        assert isinstance(decision.outcome, ChallengeReply)

    def test_only_prompts_when_that_factor_was_already_sent_for_this_challenge(self) -> None:
        """A second request for the same factor sends nothing and stores nothing."""
        decision, seen = run(
            _answer("2", policy=PHONE_POLICY),
            [(GetChallenge(OLD_KEY), SMS_RECORD), (FIND, ALICE), (self.MARK, False)],
        )
        assert decision.outcome == ChallengeReply(state=OLD_STATE, prompt=VOICE_PROMPT)
        assert seen == [GetChallenge(OLD_KEY), FIND, self.MARK]

    def test_texts_when_a_text_is_chosen_at_a_call_prompt(self) -> None:
        """The switch works both ways: from a call to a text."""
        record = replace(SMS_RECORD, factor=Factor.VOICE)
        decision, seen = run(
            _answer("1", policy=PHONE_POLICY),
            [
                (GetChallenge(OLD_KEY), record),
                (FIND, ALICE),
                (MarkOnce(f"sent:{OLD_KEY}:sms", 300.0), True),
                *_limits(),
                (_text(), DELIVERED),
                (PutChallenge, None),
            ],
        )
        assert decision.outcome == ChallengeReply(state=OLD_STATE, prompt=SMS_PROMPT)
        assert _text() in seen

    def test_rejects_without_storing_when_a_send_limit_is_hit(self) -> None:
        """A limited switch is send_limited and the record is left as it was."""
        decision, seen = run(
            _answer("2", policy=PHONE_POLICY),
            [
                (GetChallenge(OLD_KEY), SMS_RECORD),
                (FIND, ALICE),
                (self.MARK, True),
                (MarkOnce("send:cooldown:alice", 20.0), False),
            ],
        )
        assert decision.outcome == Reject(RejectReason.SEND_LIMITED)
        assert PutChallenge not in _types(seen)

    @pytest.mark.parametrize(
        ("answer", "reason"),
        [
            (DELIVERY_DOWN, RejectReason.DELIVERY_UNAVAILABLE),
            (REFUSED, RejectReason.DELIVERY_REJECTED),
        ],
        ids=["down", "refused"],
    )
    def test_rejects_even_in_fail_mode_safe_when_the_call_fails(
        self, answer: Failed, reason: RejectReason
    ) -> None:
        """A failed switch never fails open: the password was not checked in this request."""
        decision, seen = run(
            _answer("2", policy=_safe(PHONE_POLICY)),
            [
                (GetChallenge(OLD_KEY), SMS_RECORD),
                (FIND, ALICE),
                (self.MARK, True),
                *_limits(),
                (_call(), answer),
                *_given_back(),
            ],
        )
        assert decision.outcome == Reject(reason)
        assert PutChallenge not in _types(seen)

    def test_rejects_as_delivery_unavailable_when_no_provider_is_configured(self) -> None:
        """Without a provider a switch is refused, nothing counted."""
        decision, seen = run(
            _answer("2", policy=_safe(PHONE_POLICY), settings=replace(SETTINGS, can_send=False)),
            [(GetChallenge(OLD_KEY), SMS_RECORD), (FIND, ALICE), (self.MARK, True)],
        )
        assert decision.outcome == Reject(RejectReason.DELIVERY_UNAVAILABLE)
        assert seen[-1] == self.MARK

    @pytest.mark.parametrize("failing", [0, 1], ids=["once-mark", "cooldown-mark"])
    def test_rejects_even_in_fail_mode_safe_when_the_store_fails(self, failing: int) -> None:
        """A store failure during a switch is store_unavailable, never an accept."""
        script: list[Answer] = [(GetChallenge(OLD_KEY), SMS_RECORD), (FIND, ALICE)]
        if failing == 0:
            script.append((self.MARK, STORE_DOWN))
        else:
            script += [(self.MARK, True), (MarkOnce("send:cooldown:alice", 20.0), STORE_DOWN)]
        decision, _ = run(_answer("2", policy=_safe(PHONE_POLICY)), script)
        assert decision.outcome == Reject(RejectReason.STORE_UNAVAILABLE)


class TestUpstreamRelay:
    UPSTREAM_CHALLENGE = PrimaryChallenge(state=b"upstream-1", prompt="PIN?", upstream="home1")
    RELAY_RECORD = PendingChallenge(
        username="alice",
        client="vpn",
        factor=Factor.UPSTREAM,
        created=NOW,
        expires=NOW + 300,
        upstream_state=b"upstream-1",
    )

    def test_relays_the_upstream_challenge_under_a_state_of_ours(self) -> None:
        """The upstream's challenge is stored under our fresh State and passed on, unlooked-up."""
        put = PutChallenge(KEY, self.RELAY_RECORD, 300.0)
        login = _login()
        decision, seen = run(login, [(CHECK, self.UPSTREAM_CHALLENGE), (put, None)])
        assert decision.outcome == ChallengeReply(state=STATE, prompt="PIN?")
        assert seen == [CHECK, put]
        assert login.primary_verified is False

    def test_rejects_even_in_fail_mode_safe_when_the_relay_cannot_be_stored(self) -> None:
        """An unstorable relay is store_unavailable: no password was verified yet."""
        decision, _ = run(
            _login(_safe()), [(CHECK, self.UPSTREAM_CHALLENGE), (PutChallenge, STORE_DOWN)]
        )
        assert decision.outcome == Reject(RejectReason.STORE_UNAVAILABLE)

    def test_sends_the_answer_upstream_then_runs_round_one_again(self) -> None:
        """The answer goes upstream with the upstream's State; an accept leads to our own factor."""
        check = CheckPassword(b"4711", b"upstream-1")
        decision, seen = run(
            _login(password=b"4711", state=OLD_STATE),
            [
                (GetChallenge(OLD_KEY), UPSTREAM_RECORD),
                (TakeChallenge(OLD_KEY), UPSTREAM_RECORD),
                (check, ACCEPTED),
                (FIND, ALICE),
                (PEEK, 0),
                (PutChallenge, None),
            ],
        )
        assert decision.outcome == ChallengeReply(state=STATE, prompt=TOTP_PROMPT)
        assert seen[:3] == [GetChallenge(OLD_KEY), TakeChallenge(OLD_KEY), check]

    def test_accepts_when_the_upstream_accepts_the_answer_and_no_factor_follows(self) -> None:
        """With mode none, the upstream's accept of the answer is the decision."""
        decision, _ = run(
            _login(replace(POLICY, mode=Mode.NONE), password=b"4711", state=OLD_STATE),
            [
                (GetChallenge(OLD_KEY), UPSTREAM_RECORD),
                (TakeChallenge(OLD_KEY), UPSTREAM_RECORD),
                (CheckPassword(b"4711", b"upstream-1"), ACCEPTED),
            ],
        )
        assert decision.outcome == Accept(AcceptReason.PRIMARY_ONLY, ATTRS)

    def test_rejects_when_the_upstream_rejects_the_answer(self) -> None:
        """The upstream's reject of the answer is passed on with its reason."""
        decision, _ = run(
            _login(password=b"0000", state=OLD_STATE),
            [
                (GetChallenge(OLD_KEY), UPSTREAM_RECORD),
                (TakeChallenge(OLD_KEY), UPSTREAM_RECORD),
                (
                    CheckPassword(b"0000", b"upstream-1"),
                    PrimaryReject(RejectReason.PRIMARY_REJECTED),
                ),
            ],
        )
        assert decision.outcome == Reject(RejectReason.PRIMARY_REJECTED)

    def test_relays_a_further_upstream_challenge_under_a_fresh_state(self) -> None:
        """An upstream asking again is relayed again, under this request's new State."""
        again = PrimaryChallenge(state=b"upstream-2", prompt="Next?")
        record = replace(self.RELAY_RECORD, upstream_state=b"upstream-2")
        put = PutChallenge(KEY, record, 300.0)
        decision, seen = run(
            _login(password=b"4711", state=OLD_STATE),
            [
                (GetChallenge(OLD_KEY), UPSTREAM_RECORD),
                (TakeChallenge(OLD_KEY), UPSTREAM_RECORD),
                (CheckPassword(b"4711", b"upstream-1"), again),
                (put, None),
            ],
        )
        assert decision.outcome == ChallengeReply(state=STATE, prompt="Next?")
        assert seen[-1] == put

    def test_sends_an_empty_answer_upstream_when_the_request_has_no_password(self) -> None:
        """A second round without User-Password still goes upstream, with an empty answer."""
        decision, seen = run(
            _login(password=None, state=OLD_STATE),
            [
                (GetChallenge(OLD_KEY), UPSTREAM_RECORD),
                (TakeChallenge(OLD_KEY), UPSTREAM_RECORD),
                (CheckPassword(b"", b"upstream-1"), PrimaryReject(RejectReason.PRIMARY_REJECTED)),
            ],
        )
        assert decision.outcome == Reject(RejectReason.PRIMARY_REJECTED)
        assert seen[-1] == CheckPassword(b"", b"upstream-1")

    def test_rejects_without_asking_upstream_when_another_request_took_the_relay(self) -> None:
        """A relay record consumed by another request is unknown_state; nothing goes upstream."""
        decision, seen = run(
            _login(password=b"4711", state=OLD_STATE),
            [(GetChallenge(OLD_KEY), UPSTREAM_RECORD), (TakeChallenge(OLD_KEY), None)],
        )
        assert decision.outcome == Reject(RejectReason.UNKNOWN_STATE)
        assert CheckPassword not in _types(seen)


class TestBackendFailures:
    def test_rejects_even_in_fail_mode_safe_when_the_primary_is_down(self) -> None:
        """A primary that is down is never "safe": the password is unknown."""
        login = _login(_safe())
        decision, seen = run(login, [(CHECK, PRIMARY_DOWN)])
        assert decision.outcome == Reject(RejectReason.PRIMARY_UNAVAILABLE)
        assert seen == [CHECK]
        assert login.primary_verified is False

    @pytest.mark.parametrize(
        ("fail_mode", "outcome"),
        [
            (FailMode.SECURE, Reject(RejectReason.ENROLMENT_UNAVAILABLE)),
            (FailMode.SAFE, Accept(AcceptReason.FAIL_SAFE, ATTRS)),
        ],
        ids=["secure", "safe"],
    )
    def test_decides_by_fail_mode_when_the_enrolment_database_is_down_in_round_one(
        self, fail_mode: FailMode, outcome: Accept | Reject
    ) -> None:
        """After a verified password, an enrolment outage is the fail mode's decision."""
        login = _login(replace(POLICY, fail_mode=fail_mode))
        decision, _ = run(login, [(CHECK, ACCEPTED), (FIND, ENROLMENT_DOWN)])
        assert decision.outcome == outcome
        assert login.primary_verified is True

    @pytest.mark.parametrize(
        ("policy", "script"),
        [
            (POLICY, [(CHECK, ACCEPTED), (FIND, ALICE), (PEEK, STORE_DOWN)]),
            (POLICY, [*_password_ok(), (PutChallenge, STORE_DOWN)]),
            (PHONE_POLICY, [*_password_ok(), (MarkOnce, STORE_DOWN)]),
            (PHONE_POLICY, [*_password_ok(), *_limits()[:2], (Count, STORE_DOWN)]),
            (
                PHONE_POLICY,
                [*_password_ok(), *_limits(), (_text(), DELIVERED), (PutChallenge, STORE_DOWN)],
            ),
            (
                replace(POLICY, mode=Mode.APPEND),
                [*_password_ok(password=b"pw"), (MarkOnce, STORE_DOWN)],
            ),
            (
                APPROVE_POLICY,
                [*_password_ok(), *_limits(), (_approve_call(), DELIVERED), (WAIT, STORE_DOWN)],
            ),
            (
                APPROVE_POLICY,
                [
                    *_password_ok(),
                    *_limits(),
                    (_approve_call(), DELIVERED),
                    (WAIT, CallResult.APPROVE.value),
                    (FORGET, STORE_DOWN),
                ],
            ),
        ],
        ids=[
            "lockout-read",
            "challenge-put",
            "cooldown-mark",
            "send-counter",
            "put-after-text",
            "append-replay-mark",
            "approve-wait",
            "approve-clear",
        ],
    )
    @pytest.mark.parametrize(
        ("fail_mode", "outcome"),
        [
            (FailMode.SECURE, Reject(RejectReason.STORE_UNAVAILABLE)),
            (FailMode.SAFE, Accept(AcceptReason.FAIL_SAFE, ATTRS)),
        ],
        ids=["secure", "safe"],
    )
    def test_decides_by_fail_mode_when_the_store_is_down_in_round_one(
        self,
        policy: ClientPolicy,
        script: list[Answer],
        fail_mode: FailMode,
        outcome: Accept | Reject,
    ) -> None:
        """In round one the password was verified, so a store outage goes to the fail mode."""
        password = b"pw," + RIGHT.encode() if policy.mode is Mode.APPEND else PASSWORD
        decision, _ = run(_login(replace(policy, fail_mode=fail_mode), password=password), script)
        assert decision.outcome == outcome

    @pytest.mark.parametrize(
        ("policy", "script"),
        [
            (PHONE_POLICY, [*_password_ok(), *_limits(), (_text(), DELIVERY_DOWN), *_given_back()]),
            (
                APPROVE_POLICY,
                [*_password_ok(), *_limits(), (_approve_call(), DELIVERY_DOWN), *_given_back()],
            ),
        ],
        ids=["text", "approve-call"],
    )
    @pytest.mark.parametrize(
        ("fail_mode", "outcome"),
        [
            (FailMode.SECURE, Reject(RejectReason.DELIVERY_UNAVAILABLE)),
            (FailMode.SAFE, Accept(AcceptReason.FAIL_SAFE, ATTRS)),
        ],
        ids=["secure", "safe"],
    )
    def test_decides_by_fail_mode_when_the_provider_is_down(
        self,
        policy: ClientPolicy,
        script: list[Answer],
        fail_mode: FailMode,
        outcome: Accept | Reject,
    ) -> None:
        """A provider outage after a verified password goes to the fail mode; nothing stored."""
        decision, seen = run(_login(replace(policy, fail_mode=fail_mode)), script)
        assert decision.outcome == outcome
        assert PutChallenge not in _types(seen)

    @pytest.mark.parametrize(
        ("policy", "settings"),
        [
            (PHONE_POLICY, replace(SETTINGS, can_send=False)),
            (APPROVE_POLICY, replace(SETTINGS, can_approve=False)),
        ],
        ids=["no-sms-provider", "no-approve-webhook"],
    )
    @pytest.mark.parametrize(
        ("fail_mode", "outcome"),
        [
            (FailMode.SECURE, Reject(RejectReason.DELIVERY_UNAVAILABLE)),
            (FailMode.SAFE, Accept(AcceptReason.FAIL_SAFE, ATTRS)),
        ],
        ids=["secure", "safe"],
    )
    def test_decides_by_fail_mode_when_no_provider_is_configured(
        self,
        policy: ClientPolicy,
        settings: Settings,
        fail_mode: FailMode,
        outcome: Accept | Reject,
    ) -> None:
        """A phone factor without a provider is a delivery outage, decided by the fail mode."""
        login = _login(replace(policy, fail_mode=fail_mode), settings=settings)
        decision, seen = run(login, _password_ok())
        assert decision.outcome == outcome
        assert seen == [CHECK, FIND, PEEK]

    @pytest.mark.parametrize(
        ("answer", "script"),
        [
            (RIGHT, [(GetChallenge(OLD_KEY), STORE_DOWN)]),
            (
                "4711",
                [(GetChallenge(OLD_KEY), UPSTREAM_RECORD), (TakeChallenge(OLD_KEY), STORE_DOWN)],
            ),
            (
                RIGHT,
                [
                    (GetChallenge(OLD_KEY), TOTP_RECORD),
                    (FIND, replace(ALICE, disabled=True)),
                    (TakeChallenge(OLD_KEY), STORE_DOWN),
                ],
            ),
            (
                RIGHT,
                [(GetChallenge(OLD_KEY), TOTP_RECORD), (FIND, ALICE), (_replay_mark(), STORE_DOWN)],
            ),
            (
                RIGHT,
                [
                    (GetChallenge(OLD_KEY), TOTP_RECORD),
                    (FIND, ALICE),
                    (_replay_mark(), True),
                    (TakeChallenge(OLD_KEY), STORE_DOWN),
                ],
            ),
            (
                RIGHT,
                [
                    (GetChallenge(OLD_KEY), TOTP_RECORD),
                    (FIND, ALICE),
                    (_replay_mark(), True),
                    (TakeChallenge(OLD_KEY), TOTP_RECORD),
                    (FORGET, STORE_DOWN),
                ],
            ),
            (
                WRONG,
                [(GetChallenge(OLD_KEY), TOTP_RECORD), (FIND, ALICE), (FAIL_COUNT, STORE_DOWN)],
            ),
            (
                WRONG,
                [
                    (GetChallenge(OLD_KEY), TOTP_RECORD),
                    (FIND, ALICE),
                    (FAIL_COUNT, 1),
                    (AddAttempt(OLD_KEY), STORE_DOWN),
                ],
            ),
        ],
        ids=[
            "get",
            "take-relay",
            "take-disabled",
            "replay-mark",
            "take-right-code",
            "clear-failures",
            "count-failure",
            "add-attempt",
        ],
    )
    def test_never_fails_open_when_the_store_is_down_in_round_two(
        self, answer: str, script: list[Answer]
    ) -> None:
        """Round two did not verify a password: a store outage rejects even in fail mode safe."""
        login = _login(_safe(), password=answer.encode(), state=OLD_STATE)
        decision, _ = run(login, script)
        assert decision.outcome == Reject(RejectReason.STORE_UNAVAILABLE)
        assert login.primary_verified is False

    def test_never_fails_open_when_the_enrolment_database_is_down_in_round_two(self) -> None:
        """Round two rejects an enrolment outage even in fail mode safe."""
        decision, _ = run(
            _answer(RIGHT, policy=_safe()),
            [(GetChallenge(OLD_KEY), TOTP_RECORD), (FIND, ENROLMENT_DOWN)],
        )
        assert decision.outcome == Reject(RejectReason.ENROLMENT_UNAVAILABLE)

    def test_fails_safe_in_round_two_when_the_upstream_verified_the_answer_in_this_request(
        self,
    ) -> None:
        """An upstream that accepted the relayed answer verified it here: the fail mode applies."""
        decision, _ = run(
            _login(_safe(), password=b"4711", state=OLD_STATE),
            [
                (GetChallenge(OLD_KEY), UPSTREAM_RECORD),
                (TakeChallenge(OLD_KEY), UPSTREAM_RECORD),
                (CheckPassword(b"4711", b"upstream-1"), ACCEPTED),
                (FIND, ENROLMENT_DOWN),
            ],
        )
        assert decision.outcome == Accept(AcceptReason.FAIL_SAFE, ATTRS)


class TestSendGiveBack:
    """A text or call the provider did not take is given back to the send limits."""

    @pytest.mark.parametrize(
        ("start", "script", "send"),
        [
            (lambda: _login(PHONE_POLICY), [*_password_ok(), *_limits()], _text()),
            (lambda: _login(APPROVE_POLICY), [*_password_ok(), *_limits()], _approve_call()),
            (
                lambda: _answer("2", policy=PHONE_POLICY),
                [
                    (GetChallenge(OLD_KEY), SMS_RECORD),
                    (FIND, ALICE),
                    (TestFactorSwitch.MARK, True),
                    *_limits(),
                ],
                _call(),
            ),
        ],
        ids=["text", "approve-call", "switch-to-call"],
    )
    @pytest.mark.parametrize("failed", [DELIVERY_DOWN, REFUSED], ids=["outage", "refused"])
    def test_gives_every_count_back_when_the_send_fails(
        self, start: Callable[[], Login], script: list[Answer], send: Send, failed: Failed
    ) -> None:
        """User, number, region and day are each taken back once; the cool-down mark stays."""
        decision, seen = run(start(), [*script, (send, failed), *_given_back()])
        assert isinstance(decision.outcome, Reject)
        assert seen[len(script) :] == [send, *(effect for effect, _ in _given_back())]
        assert Forget not in _types(seen)

    def test_gives_nothing_back_when_the_send_may_have_gone_out(self) -> None:
        """A send with no answer in time may have been delivered: its counts stay."""
        unknown = Failed(Backend.DELIVERY, "timeout", maybe_sent=True)
        decision, seen = run(
            _login(PHONE_POLICY), [*_password_ok(), *_limits(), (_text(), unknown)]
        )
        assert decision.outcome == Reject(RejectReason.DELIVERY_UNAVAILABLE)
        assert Uncount not in _types(seen)

    def test_gives_nothing_back_when_the_text_is_delivered(self) -> None:
        """A delivered text keeps its counts."""
        decision, seen = run(
            _login(PHONE_POLICY),
            [*_password_ok(), *_limits(), (_text(), DELIVERED), (PutChallenge, None)],
        )
        assert isinstance(decision.outcome, ChallengeReply)
        assert Uncount not in _types(seen)

    def test_gives_nothing_back_when_a_limit_refuses_the_send(self) -> None:
        """A send a limit refused was never made: its counts stand, and nothing is sent."""
        decision, seen = run(
            _login(PHONE_POLICY),
            [*_password_ok(), *_limits()[:1], (Count("send:user:alice", 3600.0), 6)],
        )
        assert decision.outcome == Reject(RejectReason.SEND_LIMITED)
        assert Uncount not in _types(seen)
        assert Send not in _types(seen)

    @pytest.mark.parametrize(
        ("failed", "outcome"),
        [
            (REFUSED, Reject(RejectReason.DELIVERY_REJECTED)),
            (DELIVERY_DOWN, Accept(AcceptReason.FAIL_SAFE, ATTRS)),
        ],
        ids=["refused", "outage"],
    )
    def test_keeps_its_decision_when_the_store_cannot_give_the_counts_back(
        self, failed: Failed, outcome: Accept | Reject
    ) -> None:
        """A store failure while giving back changes nothing: a refused number never fails open."""
        first = Uncount("send:user:alice")
        decision, seen = run(
            _login(_safe(PHONE_POLICY)),
            [*_password_ok(), *_limits(), (_text(), failed), (first, STORE_DOWN)],
        )
        assert decision.outcome == outcome
        assert seen[-1] == first

    def test_gives_nothing_back_when_the_window_runs_out_during_the_send(self) -> None:
        """A send cut off by the response window may have been made: its counts stand."""
        decision, pending = run_then_expire(_login(PHONE_POLICY), [*_password_ok(), *_limits()])
        assert pending == _text()
        assert decision.outcome == Reject(RejectReason.TIMEOUT)


class TestExpire:
    @pytest.mark.parametrize("fail_mode", [FailMode.SECURE, FailMode.SAFE], ids=["secure", "safe"])
    def test_rejects_as_timeout_when_the_password_was_not_verified_yet(
        self, fail_mode: FailMode
    ) -> None:
        """A window that runs out during the password check is a timeout, whatever the mode."""
        decision, pending = run_then_expire(_login(replace(POLICY, fail_mode=fail_mode)), [])
        assert pending == CHECK
        assert decision.outcome == Reject(RejectReason.TIMEOUT)

    @pytest.mark.parametrize(
        ("fail_mode", "outcome"),
        [
            (FailMode.SECURE, Reject(RejectReason.TIMEOUT)),
            (FailMode.SAFE, Accept(AcceptReason.FAIL_SAFE, ATTRS)),
        ],
        ids=["secure", "safe"],
    )
    def test_decides_by_fail_mode_when_the_password_was_verified(
        self, fail_mode: FailMode, outcome: Accept | Reject
    ) -> None:
        """After a verified password, a window that runs out is the fail mode's decision."""
        login = _login(replace(POLICY, fail_mode=fail_mode))
        decision, pending = run_then_expire(login, [(CHECK, ACCEPTED)])
        assert pending == FIND
        assert decision.outcome == outcome

    @pytest.mark.parametrize(
        "script",
        [[], [(GetChallenge(OLD_KEY), TOTP_RECORD)]],
        ids=["reading-the-record", "looking-up-the-user"],
    )
    def test_rejects_as_timeout_in_round_two_even_in_fail_mode_safe(
        self, script: list[Answer]
    ) -> None:
        """Round two never verified a password, so its timeout is never an accept."""
        decision, _ = run_then_expire(_answer(RIGHT, policy=_safe()), script)
        assert decision.outcome == Reject(RejectReason.TIMEOUT)

    def test_keeps_the_audit_fields_learnt_before_the_window_ran_out(self) -> None:
        """An expired login still reports the user and upstream it learnt."""
        primary = replace(ACCEPTED, upstream="home1")
        decision, pending = run_then_expire(_login(), [(CHECK, primary), (FIND, ALICE)])
        assert pending == PEEK
        assert decision.audit.fields() == {
            "mode": "challenge",
            "user_id": "u1",
            "display_name": "Alice Example",
            "email": "alice@example.org",
            "upstream": "home1",
        }


class TestAudit:
    @pytest.mark.parametrize("mode", list(Mode), ids=[m.value for m in Mode])
    def test_notes_the_clients_mode_on_every_path(self, mode: Mode) -> None:
        """Even a login refused before any effect reports its client's mode."""
        decision = _login(replace(POLICY, mode=mode), password=None).start()
        assert isinstance(decision, Decision)
        assert decision.audit.fields() == {"mode": mode.value}

    def test_notes_only_the_upstream_when_the_password_is_wrong(self) -> None:
        """A refused password teaches the home server and nothing about the user."""
        decision, _ = run(
            _login(), [(CHECK, PrimaryReject(RejectReason.BAD_PASSWORD, upstream="home1"))]
        )
        assert decision.audit.fields() == {"mode": "challenge", "upstream": "home1"}

    def test_notes_nothing_learnt_when_the_primary_is_down(self) -> None:
        """A primary outage adds no field."""
        decision, _ = run(_login(), [(CHECK, PRIMARY_DOWN)])
        assert decision.audit.fields() == {"mode": "challenge"}

    def test_notes_the_directory_names_when_no_lookup_follows(self) -> None:
        """The directory's display name and e-mail are noted from the primary's identity."""
        identity = Identity(display_name="Alice D.", email="alice@dir.example")
        policy = replace(POLICY, exempt_users=frozenset({"alice"}))
        decision, _ = run(_login(policy), [(CHECK, PrimaryAccept(identity=identity))])
        assert decision.audit.fields() == {
            "mode": "challenge",
            "display_name": "Alice D.",
            "email": "alice@dir.example",
        }

    def test_keeps_the_directory_names_when_the_database_has_none(self) -> None:
        """An enrolment record without names does not blank the directory's in the audit."""
        identity = Identity(display_name="Alice D.", email="alice@dir.example")
        nameless = replace(ALICE, display_name="", email="")
        primary = PrimaryAccept(identity=identity)
        decision, _ = run(_login(), [*_password_ok(nameless, primary), (PutChallenge, None)])
        fields = decision.audit.fields()
        assert (fields["display_name"], fields["email"]) == ("Alice D.", "alice@dir.example")

    def test_prefers_the_database_names_to_the_directory_names(self) -> None:
        """Names in the enrolment record win over the directory's."""
        identity = Identity(display_name="Alice D.", email="alice@dir.example")
        primary = PrimaryAccept(identity=identity)
        decision, _ = run(_login(), [*_password_ok(ALICE, primary), (PutChallenge, None)])
        fields = decision.audit.fields()
        assert (fields["display_name"], fields["email"]) == ("Alice Example", "alice@example.org")

    def test_notes_the_user_factor_and_state_id_when_challenging_for_the_app(self) -> None:
        """A TOTP challenge reports the user, the factor and the new State's log id."""
        decision, _ = run(_login(), [*_password_ok(), (PutChallenge, None)])
        assert decision.audit.fields() == {
            "mode": "challenge",
            "factor": "totp",
            "state_id": state_id(STATE),
            "user_id": "u1",
            "display_name": "Alice Example",
            "email": "alice@example.org",
        }

    def test_notes_the_phone_tail_when_a_text_is_sent(self) -> None:
        """A texted code adds the last two digits of the number, never the number."""
        decision, _ = run(
            _login(PHONE_POLICY),
            [*_password_ok(), *_limits(), (_text(), DELIVERED), (PutChallenge, None)],
        )
        assert decision.audit.fields() == {
            "mode": "challenge",
            "factor": "sms",
            "state_id": state_id(STATE),
            "user_id": "u1",
            "display_name": "Alice Example",
            "email": "alice@example.org",
            "phone_tail": "23",
        }

    def test_notes_the_limit_that_refused_a_send(self) -> None:
        """A send limit names itself in the audit."""
        decision, _ = run(
            _login(PHONE_POLICY),
            [*_password_ok(), *_limits()[:4], (Count(f"send:day:{int(NOW // DAY)}", DAY), 10_001)],
        )
        assert decision.audit.limit == "daily_send_limit"
        assert decision.audit.factor == "sms"
        assert decision.audit.state_id is None

    def test_notes_the_providers_code_when_it_refuses_the_number(self) -> None:
        """A refused number reports the provider's error code."""
        decision, _ = run(
            _login(PHONE_POLICY), [*_password_ok(), *_limits(), (Send, REFUSED), *_given_back()]
        )
        assert decision.audit.delivery_code == 21211

    def test_notes_the_approve_factor_and_phone_tail_of_a_call(self) -> None:
        """An approve call reports its factor and the number's last two digits, no State."""
        decision, _ = run(
            _login(APPROVE_POLICY),
            [*_password_ok(), *_limits(), (Send, DELIVERED), (WAIT, None)],
        )
        assert decision.audit.fields() == {
            "mode": "approve",
            "factor": "approve",
            "user_id": "u1",
            "display_name": "Alice Example",
            "email": "alice@example.org",
            "phone_tail": "23",
        }

    def test_notes_the_relay_factor_upstream_and_state_id(self) -> None:
        """A relayed upstream challenge reports the factor upstream, the server and the State id."""
        decision, _ = run(
            _login(),
            [(CHECK, PrimaryChallenge(state=b"up", upstream="home1")), (PutChallenge, None)],
        )
        assert decision.audit.fields() == {
            "mode": "challenge",
            "factor": "upstream",
            "state_id": state_id(STATE),
            "upstream": "home1",
        }

    def test_notes_the_state_id_and_factor_and_attempt_in_round_two(self) -> None:
        """A second round reports the answered State's id, its factor and which attempt it is."""
        decision, _ = run(
            _answer(WRONG),
            [
                (GetChallenge(OLD_KEY), replace(SMS_RECORD, attempts=1)),
                (FIND, ALICE),
                (FAIL_COUNT, 2),
                (AddAttempt(OLD_KEY), 2),
            ],
        )
        assert decision.audit.fields() == {
            "mode": "challenge",
            "factor": "sms",
            "state_id": state_id(OLD_STATE),
            "user_id": "u1",
            "display_name": "Alice Example",
            "email": "alice@example.org",
            "phone_tail": "23",
            "attempt": 2,
        }

    def test_notes_only_the_state_id_when_the_state_is_unknown(self) -> None:
        """An unknown State reports its log id and nothing about a user."""
        decision, _ = run(_answer(RIGHT), [(GetChallenge(OLD_KEY), None)])
        assert decision.audit.fields() == {"mode": "challenge", "state_id": state_id(OLD_STATE)}

    def test_notes_the_new_factor_after_a_switch(self) -> None:
        """A switch to a call reports the voice factor."""
        decision, _ = run(
            _answer("2", policy=PHONE_POLICY),
            [(GetChallenge(OLD_KEY), SMS_RECORD), (FIND, ALICE), (MarkOnce, False)],
        )
        assert decision.audit.factor == "voice"
        assert decision.audit.attempt == 1

    def test_asks_for_a_user_locked_notice_when_wrong_codes_lock_the_user(self) -> None:
        """The lockout asks for its warning line with the count and the duration."""
        decision, _ = run(
            _answer(WRONG),
            [
                (GetChallenge(OLD_KEY), TOTP_RECORD),
                (FIND, ALICE),
                (FAIL_COUNT, 6),
                (Count("lock:alice", 120.0), 1),
                (TakeChallenge(OLD_KEY), None),
            ],
        )
        assert decision.audit.notices == (
            Notice("user_locked", (("failures", 6), ("seconds", 120.0))),
        )

    @pytest.mark.parametrize(
        ("login", "script"),
        [
            (
                _login(PHONE_POLICY),
                [*_password_ok(), *_limits(), (_text(), DELIVERED), (PutChallenge, None)],
            ),
            (
                _login(
                    replace(POLICY, mode=Mode.APPEND), password=PASSWORD + b"," + RIGHT.encode()
                ),
                [*_password_ok(), (_replay_mark(), True)],
            ),
            (
                _answer(SENT),
                [
                    (GetChallenge(OLD_KEY), SMS_RECORD),
                    (FIND, ALICE),
                    (TakeChallenge(OLD_KEY), SMS_RECORD),
                    (FORGET, None),
                ],
            ),
            (
                _answer(RIGHT),
                [
                    (GetChallenge(OLD_KEY), TOTP_RECORD),
                    (FIND, ALICE),
                    (_replay_mark(), False),
                    (FAIL_COUNT, 5),
                    (Count("lock:alice", 60.0), 1),
                    (TakeChallenge(OLD_KEY), None),
                ],
            ),
            (
                _login(APPROVE_POLICY),
                [
                    *_password_ok(),
                    *_limits(),
                    (Send, DELIVERED),
                    (WAIT, CallResult.FRAUD.value),
                    (Count, 1),
                ],
            ),
        ],
        ids=["sms-challenge", "append-accept", "sent-code-accept", "replay-lockout", "fraud"],
    )
    def test_holds_no_secret(self, login: Login, script: list[Answer]) -> None:
        """No password, code, State, token or full number appears anywhere in the audit."""
        decision, _ = run(login, script)
        text = repr(decision.audit) + repr(decision.audit.fields())
        secrets = [
            PASSWORD.decode(),
            RIGHT,
            SENT,
            FRESH.digits,
            FRESH.token,
            PHONE,
            PHONE[1:],
            STATE.decode(),
            OLD_STATE.decode(),
            STATE.hex(),
            OLD_STATE.hex(),
            KEY,
            OLD_KEY,
            code_hash(CODE_KEY, OLD_STATE, SENT),
        ]
        for secret in secrets:
            assert secret not in text


FULL_NOTICE = Notice("store_full", (("backend", "store"), ("error", "full")))
SWITCH_MARK = MarkOnce(f"sent:{OLD_KEY}:voice", 300.0)
RELAYED = PrimaryChallenge(state=b"upstream-1", prompt="PIN?", upstream="home1")
APPENDED = PASSWORD + b"," + RIGHT.encode()


class TestFullStore:
    """A full store is never a fail-mode case: every write it refuses rejects as store_full."""

    @pytest.mark.parametrize(
        ("policy", "password", "script"),
        [
            (POLICY, PASSWORD, [*_password_ok(), (PutChallenge, FULL)]),
            (PHONE_POLICY, PASSWORD, [*_password_ok(), (MarkOnce, FULL)]),
            (PHONE_POLICY, PASSWORD, [*_password_ok(), *_limits()[:2], (Count, FULL)]),
            (
                PHONE_POLICY,
                PASSWORD,
                [*_password_ok(), *_limits(), (_text(), DELIVERED), (PutChallenge, FULL)],
            ),
            (replace(POLICY, mode=Mode.APPEND), APPENDED, [*_password_ok(), (MarkOnce, FULL)]),
            (APPROVE_POLICY, PASSWORD, [*_password_ok(), (MarkOnce, FULL)]),
            (APPROVE_POLICY, PASSWORD, [*_password_ok(), *_limits()[:3], (Count, FULL)]),
            (POLICY, PASSWORD, [(CHECK, RELAYED), (PutChallenge, FULL)]),
        ],
        ids=[
            "challenge-put",
            "cooldown-mark",
            "send-counter",
            "put-after-text",
            "append-replay-mark",
            "approve-cooldown-mark",
            "approve-send-counter",
            "relay-put",
        ],
    )
    @pytest.mark.parametrize("fail_mode", [FailMode.SECURE, FailMode.SAFE], ids=["secure", "safe"])
    def test_rejects_as_store_full_in_round_one_whatever_the_fail_mode(
        self, policy: ClientPolicy, password: bytes, script: list[Answer], fail_mode: FailMode
    ) -> None:
        """After a verified password, a full store still rejects (never a fail-safe accept)."""
        login = _login(replace(policy, fail_mode=fail_mode), password=password)
        decision, _ = run(login, script)
        assert decision.outcome == Reject(RejectReason.STORE_FULL)
        assert FULL_NOTICE in decision.audit.notices

    @pytest.mark.parametrize(
        ("policy", "answer", "script"),
        [
            (
                POLICY,
                RIGHT,
                [(GetChallenge(OLD_KEY), TOTP_RECORD), (FIND, ALICE), (_replay_mark(), FULL)],
            ),
            (
                POLICY,
                WRONG,
                [(GetChallenge(OLD_KEY), TOTP_RECORD), (FIND, ALICE), (FAIL_COUNT, FULL)],
            ),
            (
                POLICY,
                WRONG,
                [
                    (GetChallenge(OLD_KEY), TOTP_RECORD),
                    (FIND, ALICE),
                    (FAIL_COUNT, 5),
                    (Count("lock:alice", 60.0), FULL),
                ],
            ),
            (
                POLICY,
                WRONG,
                [
                    (GetChallenge(OLD_KEY), TOTP_RECORD),
                    (FIND, ALICE),
                    (FAIL_COUNT, 1),
                    (AddAttempt(OLD_KEY), FULL),
                ],
            ),
            (
                PHONE_POLICY,
                "2",
                [(GetChallenge(OLD_KEY), SMS_RECORD), (FIND, ALICE), (SWITCH_MARK, FULL)],
            ),
            (
                PHONE_POLICY,
                "2",
                [
                    (GetChallenge(OLD_KEY), SMS_RECORD),
                    (FIND, ALICE),
                    (SWITCH_MARK, True),
                    *_limits()[:1],
                    (Count, FULL),
                ],
            ),
            (
                PHONE_POLICY,
                "2",
                [
                    (GetChallenge(OLD_KEY), SMS_RECORD),
                    (FIND, ALICE),
                    (SWITCH_MARK, True),
                    *_limits(),
                    (_call(), DELIVERED),
                    (PutChallenge, FULL),
                ],
            ),
        ],
        ids=[
            "replay-mark",
            "count-failure",
            "lock",
            "add-attempt",
            "switch-mark",
            "switch-send-counter",
            "switch-put",
        ],
    )
    @pytest.mark.parametrize("fail_mode", [FailMode.SECURE, FailMode.SAFE], ids=["secure", "safe"])
    def test_rejects_as_store_full_in_round_two_whatever_the_fail_mode(
        self, policy: ClientPolicy, answer: str, script: list[Answer], fail_mode: FailMode
    ) -> None:
        """A full store in round two rejects with its own reason, not store_unavailable."""
        decision, _ = run(_answer(answer, policy=replace(policy, fail_mode=fail_mode)), script)
        assert decision.outcome == Reject(RejectReason.STORE_FULL)
        assert FULL_NOTICE in decision.audit.notices

    def test_rejects_as_store_full_after_a_relayed_answer_verified_in_this_request(self) -> None:
        """Even when the upstream verified the answer here (fail mode would apply), full rejects."""
        decision, _ = run(
            _login(_safe(), password=b"4711", state=OLD_STATE),
            [
                (GetChallenge(OLD_KEY), UPSTREAM_RECORD),
                (TakeChallenge(OLD_KEY), UPSTREAM_RECORD),
                (CheckPassword(b"4711", b"upstream-1"), ACCEPTED),
                (FIND, ALICE),
                (PEEK, 0),
                (PutChallenge, FULL),
            ],
        )
        assert decision.outcome == Reject(RejectReason.STORE_FULL)
        assert decision.audit.notices == (FULL_NOTICE,)

    def test_store_outage_still_follows_the_fail_mode(self) -> None:
        """Only a full store is refused outright: an outage is still the fail mode's decision."""
        decision, _ = run(_login(_safe()), [*_password_ok(), (PutChallenge, STORE_DOWN)])
        assert decision.outcome == Accept(AcceptReason.FAIL_SAFE, ATTRS)
        assert decision.audit.notices == ()
