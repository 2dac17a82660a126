"""The factor plug-ins of core/factors/: usable, start and check, driven with scripted effects."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from typing import Any

import pytest

from mfa_radius.core.audit import Notes, Notice
from mfa_radius.core.call_result import CallResult
from mfa_radius.core.challenges import challenge_key
from mfa_radius.core.effects import (
    Backend,
    BackendFailure,
    Count,
    Failed,
    MarkOnce,
    Send,
    WaitResult,
)
from mfa_radius.core.factors import REGISTRY
from mfa_radius.core.factors.approve import APPROVE_MARGIN, Approve
from mfa_radius.core.factors.base import Context, Fresh, Settings, Verdict
from mfa_radius.core.factors.sent_code import SentCode, code_hash, sent_code_matches, sms_text
from mfa_radius.core.factors.totp import Totp
from mfa_radius.core.factors.upstream import UpstreamRelay, relay
from mfa_radius.core.limits import Lockout
from mfa_radius.core.messages import ApproveCall, CodeCall, CodeText, Delivery
from mfa_radius.core.model import (
    Accept,
    AcceptReason,
    ChallengeReply,
    Factor,
    PendingChallenge,
    PrimaryChallenge,
    Reject,
    RejectReason,
    TotpToken,
    User,
)
from mfa_radius.core.otp import hotp, timecode
from mfa_radius.core.policy import ClientPolicy
from tests.support.script import Answer, drive, limits_given_back, limits_pass

NOW = 1_700_000_000.0
DEADLINE = NOW + 9.0
STATE = b"S" * 16
FRESH = Fresh(state=STATE, digits="123456789012", token="tok")
KEY = b"k" * 32
PHONE = "+14155550123"
TOKEN = TotpToken(token_id="app", secret=b"t" * 20)
ATTRS = ((25, b"class-a"),)
ALICE = User(user_id="u1", username="alice", phone=PHONE, tokens=(TOKEN,))
POLICY = ClientPolicy(
    name="vpn",
    factors=(Factor.SMS, Factor.VOICE, Factor.TOTP),
    sms_sender="+15005550006",
    voice_caller_id="+15005550007",
    organisation="Example Org",
    language="en-GB",
)
SETTINGS = Settings(code_key=KEY, can_send=True, can_approve=True, gather_seconds=12)
DELIVERED = Delivery("SM1")
DELIVERY_DOWN = Failed(Backend.DELIVERY, "503")
REFUSED = Failed(Backend.DELIVERY, "invalid number", permanent=True, code=21211)


def _ctx(**changes: Any) -> Context:
    base = Context(
        user=ALICE,
        phone=PHONE,
        policy=POLICY,
        settings=SETTINGS,
        now=NOW,
        deadline=DEADLINE,
        state=STATE,
        fresh=FRESH,
        notes=Notes(),
        attributes=ATTRS,
    )
    return replace(base, **changes)


def _record(**changes: Any) -> PendingChallenge:
    base = PendingChallenge(
        username="alice", client="vpn", factor=Factor.TOTP, created=NOW, expires=NOW + 300
    )
    return replace(base, **changes)


def _totp(at: float, token: TotpToken = TOKEN) -> str:
    return hotp(token.secret, timecode(at, token.time_step), digits=token.digits)


def _limits_pass() -> list[Answer]:
    """Every send-limit step answering "within limits" for alice at PHONE."""
    return limits_pass("alice", PHONE, NOW, "US")


def _given_back() -> list[Answer]:
    """Every send counter of alice at PHONE taken back after a failed send."""
    return limits_given_back("alice", PHONE, NOW, "US")


class TestRegistry:
    def test_checks_a_sent_code_before_totp(self) -> None:
        """Answers are checked in registry order: texts and calls first, then the app."""
        assert list(REGISTRY) == [
            Factor.SMS,
            Factor.VOICE,
            Factor.TOTP,
            Factor.APPROVE,
            Factor.UPSTREAM,
        ]

    @pytest.mark.parametrize("factor", list(Factor), ids=[f.value for f in Factor])
    def test_each_plugin_is_registered_under_its_own_factor(self, factor: Factor) -> None:
        """Every factor has a plug-in that names that factor."""
        assert REGISTRY[factor].factor is factor

    @pytest.mark.parametrize(
        ("factor", "at_prompt"),
        [
            (Factor.SMS, True),
            (Factor.VOICE, True),
            (Factor.TOTP, True),
            (Factor.APPROVE, False),
            (Factor.UPSTREAM, False),
        ],
        ids=["sms", "voice", "totp", "approve", "upstream"],
    )
    def test_only_typed_factors_are_answered_at_the_prompt(
        self, factor: Factor, at_prompt: bool
    ) -> None:
        """Codes are typed at a prompt; approve calls and upstream relays are not offered there."""
        assert REGISTRY[factor].at_prompt is at_prompt


class TestTotp:
    @pytest.mark.parametrize(
        ("user", "usable"),
        [(ALICE, True), (User(user_id="u2", username="bob", phone=PHONE), False)],
        ids=["with-token", "phone-only"],
    )
    def test_is_usable_only_with_an_enrolled_token(self, user: User, usable: bool) -> None:
        """TOTP needs a token; a phone number does not make it usable."""
        assert Totp().usable(user, phone_ok=True) is usable

    def test_start_sends_nothing(self) -> None:
        """Starting TOTP asks for no effect and stores no code hash."""
        assert drive(Totp().start(_ctx()), []) == ("", [])

    def test_check_matches_a_right_code_and_sets_its_replay_mark(self) -> None:
        """A right code is a MATCH once its replay mark (token, step) is set for the first time."""
        step = timecode(NOW, 30)
        mark = MarkOnce(f"totp:app:{step}", (step + 3) * 30 - NOW)
        verdict, seen = drive(Totp().check(_ctx(), _record(), _totp(NOW)), [(mark, True)])
        assert verdict is Verdict.MATCH
        assert seen == [mark]

    def test_check_says_replayed_when_the_mark_is_already_set(self) -> None:
        """A right code whose replay mark exists was used before: REPLAYED (RFC 6238 §5.2)."""
        verdict, _ = drive(Totp().check(_ctx(), _record(), _totp(NOW)), [(MarkOnce, False)])
        assert verdict is Verdict.REPLAYED

    def test_check_accepts_the_previous_step_within_the_lookback(self) -> None:
        """A code from one step back matches with the default look-back of one step."""
        verdict, seen = drive(Totp().check(_ctx(), _record(), _totp(NOW - 30)), [(MarkOnce, True)])
        assert verdict is Verdict.MATCH
        assert isinstance(seen[0], MarkOnce)
        assert seen[0].key == f"totp:app:{timecode(NOW, 30) - 1}"

    def test_check_refuses_the_previous_step_when_lookback_is_zero(self) -> None:
        """Without look-back, last step's code is no match and no mark is touched."""
        ctx = _ctx(policy=replace(POLICY, lookback_steps=0))
        assert drive(Totp().check(ctx, _record(), _totp(NOW - 30)), []) == (
            Verdict.NO_MATCH,
            [],
        )

    @pytest.mark.parametrize(
        "answer",
        ["000000", "12345", "1234567", "abcdef", ""],
        ids=["wrong", "short", "long", "letters", "empty"],
    )
    def test_check_is_no_match_without_effects_when_the_code_is_wrong(self, answer: str) -> None:
        """A wrong or malformed code never reaches the store."""
        assert drive(Totp().check(_ctx(), _record(), answer), []) == (Verdict.NO_MATCH, [])

    def test_check_is_no_match_when_the_user_has_no_token(self) -> None:
        """A phone-only user's answer is never a TOTP match."""
        ctx = _ctx(user=replace(ALICE, tokens=()))
        assert drive(Totp().check(ctx, _record(), _totp(NOW)), []) == (Verdict.NO_MATCH, [])


class TestSentCode:
    @pytest.mark.parametrize(
        "factor",
        [Factor.TOTP, Factor.APPROVE, Factor.UPSTREAM],
        ids=["totp", "approve", "upstream"],
    )
    def test_refuses_a_factor_that_is_not_sent_by_phone(self, factor: Factor) -> None:
        """A sent code goes by text or by call; anything else is a programming error."""
        with pytest.raises(ValueError, match="by text or by call"):
            SentCode(factor)

    @pytest.mark.parametrize("phone_ok", [True, False], ids=["phone-ok", "no-phone"])
    def test_is_usable_only_with_a_usable_number(self, phone_ok: bool) -> None:
        """Texts and calls need a valid number in an allowed region, and nothing else."""
        user = User(user_id="u2", username="bob", tokens=(TOKEN,))
        assert SentCode(Factor.SMS).usable(user, phone_ok) is phone_ok
        assert SentCode(Factor.VOICE).usable(user, phone_ok) is phone_ok

    def test_start_texts_the_code_and_returns_its_keyed_hash(self) -> None:
        """An SMS start counts the limits, sends one text and returns the hash of the code."""
        ctx = _ctx()
        body = "Example Org sign-in code: 123456. Valid for 5 minutes."
        text = Send(CodeText(to=PHONE, body=body, sender="+15005550006"))
        started, seen = drive(SentCode(Factor.SMS).start(ctx), [*_limits_pass(), (text, DELIVERED)])
        assert started == code_hash(KEY, STATE, "123456")
        assert seen[-1] == text
        assert ctx.notes.freeze().factor == "sms"
        assert ctx.notes.freeze().phone_tail == "23"

    def test_start_sends_the_first_code_length_digits(self) -> None:
        """The code is the first ``code_length`` of the fresh digits."""
        ctx = _ctx(policy=replace(POLICY, code_length=8))
        started, seen = drive(SentCode(Factor.SMS).start(ctx), [*_limits_pass(), (Send, DELIVERED)])
        assert started == code_hash(KEY, STATE, "12345678")
        sent = seen[-1]
        assert isinstance(sent, Send)
        assert isinstance(sent.message, CodeText)
        assert "12345678" in sent.message.body

    @pytest.mark.parametrize(
        ("user_language", "expected"),
        [("de-DE", "de-DE"), ("", "en-GB")],
        ids=["user-language-wins", "profile-language"],
    )
    def test_start_calls_with_the_code_in_the_users_language(
        self, user_language: str, expected: str
    ) -> None:
        """A voice start places one call reading the code, in the user's language if set."""
        ctx = _ctx(user=replace(ALICE, language=user_language))
        call = Send(
            CodeCall(
                to=PHONE,
                code="123456",
                organisation="Example Org",
                language=expected,
                caller_id="+15005550007",
            )
        )
        started, seen = drive(
            SentCode(Factor.VOICE).start(ctx), [*_limits_pass(), (call, DELIVERED)]
        )
        assert started == code_hash(KEY, STATE, "123456")
        assert seen[-1] == call
        assert ctx.notes.freeze().factor == "voice"

    def test_start_raises_a_delivery_failure_when_no_provider_is_configured(self) -> None:
        """Without a provider nothing is counted and the failure goes to the fail mode."""
        ctx = _ctx(settings=replace(SETTINGS, can_send=False))
        with pytest.raises(BackendFailure) as raised:
            drive(SentCode(Factor.SMS).start(ctx), [])
        assert raised.value.failed.backend is Backend.DELIVERY
        assert ctx.notes.freeze().factor == "sms"

    def test_start_rejects_without_sending_when_a_limit_is_hit(self) -> None:
        """A send limit refuses the login as send_limited, and nothing is sent."""
        ctx = _ctx()
        started, seen = drive(
            SentCode(Factor.SMS).start(ctx), [(MarkOnce("send:cooldown:alice", 20.0), False)]
        )
        assert started == Reject(RejectReason.SEND_LIMITED)
        assert not any(isinstance(e, Send) for e in seen)
        assert ctx.notes.freeze().limit == "cooldown"

    def test_start_rejects_and_notes_the_code_when_the_provider_refuses_the_number(self) -> None:
        """A permanent refusal is delivery_rejected, with the provider's error code noted."""
        ctx = _ctx()
        started, _ = drive(
            SentCode(Factor.SMS).start(ctx), [*_limits_pass(), (Send, REFUSED), *_given_back()]
        )
        assert started == Reject(RejectReason.DELIVERY_REJECTED)
        assert ctx.notes.freeze().delivery_code == 21211

    def test_start_raises_a_delivery_failure_when_the_provider_is_down(self) -> None:
        """A transient provider failure is raised for the fail mode to decide."""
        with pytest.raises(BackendFailure) as raised:
            drive(
                SentCode(Factor.SMS).start(_ctx()),
                [*_limits_pass(), (Send, DELIVERY_DOWN), *_given_back()],
            )
        assert raised.value.failed is DELIVERY_DOWN

    @pytest.mark.parametrize(
        ("factor", "record_factor", "answer", "verdict"),
        [
            (Factor.SMS, Factor.SMS, "123456", Verdict.MATCH),
            (Factor.SMS, Factor.SMS, "654321", Verdict.NO_MATCH),
            (Factor.SMS, Factor.SMS, "12345a", Verdict.NO_MATCH),
            (Factor.SMS, Factor.SMS, "", Verdict.NO_MATCH),
            (Factor.VOICE, Factor.VOICE, "123456", Verdict.MATCH),
            (Factor.VOICE, Factor.SMS, "123456", Verdict.NO_MATCH),
            (Factor.SMS, Factor.VOICE, "123456", Verdict.NO_MATCH),
        ],
        ids=[
            "sms-right",
            "sms-wrong",
            "sms-not-digits",
            "sms-empty",
            "voice-right",
            "voice-plugin-sms-record",
            "sms-plugin-voice-record",
        ],
    )
    def test_check_matches_only_the_code_its_own_factor_sent(
        self, factor: Factor, record_factor: Factor, answer: str, verdict: Verdict
    ) -> None:
        """The answer matches when it hashes to the record's code hash and the record is ours."""
        record = _record(factor=record_factor, code_hash=code_hash(KEY, STATE, "123456"))
        assert drive(SentCode(factor).check(_ctx(), record, answer), []) == (verdict, [])

    def test_check_is_no_match_when_the_code_was_sent_for_another_state(self) -> None:
        """The hash is bound to the State: a code sent for another challenge does not match."""
        record = _record(factor=Factor.SMS, code_hash=code_hash(KEY, b"T" * 16, "123456"))
        assert drive(SentCode(Factor.SMS).check(_ctx(), record, "123456"), []) == (
            Verdict.NO_MATCH,
            [],
        )

    def test_check_is_no_match_when_the_record_has_no_code_hash(self) -> None:
        """A record without a sent code never matches, even an empty answer."""
        record = _record(factor=Factor.SMS)
        assert drive(SentCode(Factor.SMS).check(_ctx(), record, ""), []) == (
            Verdict.NO_MATCH,
            [],
        )


class TestCodeHash:
    def test_is_the_hmac_of_state_and_code(self) -> None:
        """The hash is HMAC-SHA256 over State, a zero byte and the code, in hex."""
        expected = hmac.new(KEY, STATE + b"\x00123456", hashlib.sha256).hexdigest()
        assert code_hash(KEY, STATE, "123456") == expected

    @pytest.mark.parametrize(
        ("key", "state", "code"),
        [(b"x" * 32, STATE, "123456"), (KEY, b"T" * 16, "123456"), (KEY, STATE, "123457")],
        ids=["other-key", "other-state", "other-code"],
    )
    def test_differs_when_any_input_differs(self, key: bytes, state: bytes, code: str) -> None:
        """Key, State and code all bind the hash."""
        assert code_hash(key, state, code) != code_hash(KEY, STATE, "123456")
        assert not sent_code_matches(KEY, STATE, code_hash(key, state, code), "123456")


class TestSmsText:
    @pytest.mark.parametrize(
        ("template", "expected"),
        [
            ("{code}", "123456"),
            ("{organisation}: {code} ({minutes} min)", "Example Org: 123456 (5 min)"),
            ("{code} {code}", "123456 123456"),
            ("no placeholders", "no placeholders"),
            ("{unknown} {code}", "{unknown} 123456"),
        ],
        ids=["code-only", "all-three", "repeated", "none", "unknown-kept"],
    )
    def test_fills_the_placeholders(self, template: str, expected: str) -> None:
        """``{code}``, ``{minutes}`` and ``{organisation}`` are filled; anything else is kept."""
        assert sms_text(template, code="123456", minutes=5, organisation="Example Org") == expected

    @pytest.mark.parametrize(
        ("ttl", "minutes"),
        [(300.0, "5"), (119.0, "1"), (30.0, "1"), (600.0, "10")],
        ids=["five", "rounds-down", "at-least-one", "ten"],
    )
    def test_text_states_the_challenge_lifetime_in_whole_minutes(
        self, ttl: float, minutes: str
    ) -> None:
        """The body's ``{minutes}`` is the challenge TTL in whole minutes, at least one."""
        ctx = _ctx(policy=replace(POLICY, challenge_ttl=ttl, sms_text="{minutes}"))
        _, seen = drive(SentCode(Factor.SMS).start(ctx), [*_limits_pass(), (Send, DELIVERED)])
        sent = seen[-1]
        assert isinstance(sent, Send)
        assert sent.message == CodeText(to=PHONE, body=minutes, sender="+15005550006")


class TestApprove:
    @pytest.mark.parametrize("phone_ok", [True, False], ids=["phone-ok", "no-phone"])
    def test_is_usable_only_with_a_usable_number(self, phone_ok: bool) -> None:
        """An approve call needs a valid number in an allowed region."""
        assert Approve().usable(ALICE, phone_ok) is phone_ok

    def test_check_never_matches_a_typed_answer(self) -> None:
        """Nothing typed at a prompt answers an approve call."""
        assert drive(Approve().check(_ctx(), _record(), "1"), []) == (Verdict.NO_MATCH, [])

    def _call(self, language: str = "en-GB") -> Send:
        return Send(
            ApproveCall(
                to=PHONE,
                token="tok",
                organisation="Example Org",
                language=language,
                caller_id="+15005550007",
                gather_seconds=12,
            )
        )

    def test_start_calls_then_waits_until_a_margin_before_the_deadline(self) -> None:
        """The call is placed within the limits, then the key awaited until deadline - margin."""
        ctx = _ctx()
        wait = WaitResult("tok", until=DEADLINE - APPROVE_MARGIN)
        outcome, seen = drive(
            Approve().start(ctx),
            [*_limits_pass(), (self._call(), DELIVERED), (wait, CallResult.APPROVE.value)],
        )
        assert outcome == Accept(AcceptReason.MFA_OK, ATTRS)
        assert seen[-2:] == [self._call(), wait]
        assert wait.until == pytest.approx(NOW + 8.7)
        audit = ctx.notes.freeze()
        assert (audit.factor, audit.phone_tail) == ("approve", "23")

    def test_start_calls_in_the_users_language_when_they_have_one(self) -> None:
        """The user's language wins over the profile's."""
        ctx = _ctx(user=replace(ALICE, language="fr-FR"))
        _, seen = drive(
            Approve().start(ctx),
            [*_limits_pass(), (self._call("fr-FR"), DELIVERED), (WaitResult, None)],
        )
        assert seen[-2] == self._call("fr-FR")

    @pytest.mark.parametrize(
        ("result", "outcome"),
        [
            (CallResult.DENY.value, Reject(RejectReason.APPROVAL_DENIED)),
            ("something-else", Reject(RejectReason.APPROVAL_DENIED)),
            (None, Reject(RejectReason.APPROVAL_TIMEOUT)),
        ],
        ids=["deny", "unknown-result", "no-key-in-time"],
    )
    def test_start_rejects_unless_the_user_approves(
        self, result: str | None, outcome: Reject
    ) -> None:
        """Any answer but approve refuses; no answer within the wait is approval_timeout."""
        ctx = _ctx()
        decided, _ = drive(
            Approve().start(ctx), [*_limits_pass(), (Send, DELIVERED), (WaitResult, result)]
        )
        assert decided == outcome
        assert ctx.notes.freeze().notices == ()

    def test_start_locks_the_user_and_notices_when_fraud_is_reported(self) -> None:
        """Pressing 9 refuses, locks the user for the longest lockout and asks for a notice."""
        ctx = _ctx(settings=replace(SETTINGS, lockout=Lockout(max_delay=7200.0)))
        lock = Count("lock:alice", 7200.0)
        decided, seen = drive(
            Approve().start(ctx),
            [
                *_limits_pass(),
                (Send, DELIVERED),
                (WaitResult, CallResult.FRAUD.value),
                (lock, 1),
            ],
        )
        assert decided == Reject(RejectReason.FRAUD_REPORTED)
        assert seen[-1] == lock
        assert ctx.notes.freeze().notices == (Notice("fraud_reported"),)

    def test_start_raises_a_delivery_failure_when_calls_cannot_be_placed(self) -> None:
        """Without a provider and webhook the failure goes to the fail mode, nothing counted."""
        ctx = _ctx(settings=replace(SETTINGS, can_approve=False))
        with pytest.raises(BackendFailure) as raised:
            drive(Approve().start(ctx), [])
        assert raised.value.failed.backend is Backend.DELIVERY

    def test_start_rejects_without_calling_when_a_limit_is_hit(self) -> None:
        """A send limit refuses the login before any call is placed."""
        ctx = _ctx()
        decided, seen = drive(
            Approve().start(ctx), [(MarkOnce("send:cooldown:alice", 20.0), False)]
        )
        assert decided == Reject(RejectReason.SEND_LIMITED)
        assert seen == [MarkOnce("send:cooldown:alice", 20.0)]

    def test_start_rejects_without_waiting_when_the_number_is_refused(self) -> None:
        """A refused number is delivery_rejected and no keypress is awaited."""
        ctx = _ctx()
        decided, seen = drive(
            Approve().start(ctx), [*_limits_pass(), (Send, REFUSED), *_given_back()]
        )
        assert decided == Reject(RejectReason.DELIVERY_REJECTED)
        assert not any(isinstance(e, WaitResult) for e in seen)
        assert ctx.notes.freeze().delivery_code == 21211

    def test_start_raises_a_delivery_failure_when_the_provider_is_down(self) -> None:
        """A transient provider failure is left to the fail mode."""
        with pytest.raises(BackendFailure):
            drive(Approve().start(_ctx()), [*_limits_pass(), (Send, DELIVERY_DOWN), *_given_back()])


class TestUpstreamRelay:
    def test_is_never_usable(self) -> None:
        """The relay is never offered to a user; only the upstream's challenge starts it."""
        assert UpstreamRelay().usable(ALICE, phone_ok=True) is False

    def test_start_is_a_programming_error(self) -> None:
        """Starting the relay as a factor raises: the engine relays through ``relay``."""
        with pytest.raises(ValueError, match="upstream's challenge"):
            drive(UpstreamRelay().start(_ctx()), [])

    def test_check_never_matches_locally(self) -> None:
        """An answer to a relayed challenge is checked upstream, never here."""
        record = _record(factor=Factor.UPSTREAM, upstream_state=b"up")
        assert drive(UpstreamRelay().check(_ctx(), record, "123456"), []) == (
            Verdict.NO_MATCH,
            [],
        )

    def test_relay_keeps_the_upstream_state_under_a_state_of_ours(self) -> None:
        """The record maps our State to the upstream's; the NAS sees only ours."""
        issue = relay(
            PrimaryChallenge(state=b"upstream-state", prompt="PIN?", upstream="home1"),
            POLICY,
            username="alice",
            now=NOW,
            state=STATE,
        )
        assert issue.key == challenge_key(STATE)
        assert issue.ttl == POLICY.challenge_ttl
        assert issue.record == PendingChallenge(
            username="alice",
            client="vpn",
            factor=Factor.UPSTREAM,
            created=NOW,
            expires=NOW + POLICY.challenge_ttl,
            upstream_state=b"upstream-state",
        )
        assert issue.reply == ChallengeReply(state=STATE, prompt="PIN?")

    def test_relay_cuts_a_long_prompt_to_one_attribute(self) -> None:
        """The upstream's prompt is cut to 253 octets without splitting a character."""
        issue = relay(
            PrimaryChallenge(state=b"up", prompt="é" * 200),
            POLICY,
            username="a",
            now=NOW,
            state=STATE,
        )
        assert issue.reply.prompt == "é" * 126

    def test_relay_refuses_a_short_state(self) -> None:
        """A State under 128 bits is a programming error."""
        with pytest.raises(ValueError, match="128 random bits"):
            relay(PrimaryChallenge(state=b"up"), POLICY, username="a", now=NOW, state=b"short")
