"""Codes by text message and call, the factor menu, approve calls, send limits and lockout,
through the engine with real stores and a real SQLite enrolment database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from mfa_radius.adapters.aesgcm_keyring import Keyring
from mfa_radius.adapters.memory_store import MemoryChallengeStore
from mfa_radius.adapters.redis_store import RedisChallengeStore
from mfa_radius.adapters.sql_enrolments import SqlEnrolmentStore
from mfa_radius.core import limits, otp
from mfa_radius.core.login import Settings
from mfa_radius.core.model import (
    Accept,
    AcceptReason,
    AuthAttempt,
    ChallengeReply,
    Factor,
    FailMode,
    Mode,
    Outcome,
    Reject,
    RejectReason,
)
from mfa_radius.core.policy import ClientPolicy
from mfa_radius.engine import Profile
from mfa_radius.ports import ApproveCall, CodeCall, CodeText, SharedState
from tests.support.clock import FakeClock
from tests.support.logins import Logins
from tests.support.primaries import StaticPrimary
from tests.support.senders import RecordingMessageSender

PASSWORD = b"correct horse"
PHONE = "+14155550123"
TOTP_SECRET = b"0123456789abcdefghij"
ATTRS = ((25, b"class-vpn"),)
POLICY = ClientPolicy(
    name="vpn",
    factors=(Factor.SMS,),
    sms_sender="+12025550143",
    voice_caller_id="+12025550143",
    organisation="Example Corp",
    response_window=5.0,
)
NO_LIMITS = limits.SendLimits(
    per_user=limits.Rate(100, 3600), per_number=limits.Rate(100, 3600), cooldown=0.001
)


@pytest.fixture
async def enrolments(tmp_path: Path) -> AsyncIterator[SqlEnrolmentStore]:
    keyring = Keyring.from_text(Keyring.generate_line("k1"), source="test")
    store = await SqlEnrolmentStore.open(
        f"sqlite+aiosqlite:///{tmp_path / 'e.db'}", keyring, create=True
    )
    await store.add_user("pat", phone=PHONE)  # phone only
    await store.add_user("alice", phone=PHONE)  # phone and app
    await store.add_totp("alice", TOTP_SECRET)
    await store.add_user("fred", phone="+33612345678")  # a French number
    yield store
    await store.close()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[SharedState]:
    if request.param == "memory":
        yield MemoryChallengeStore(clock)
        return
    redis_store = RedisChallengeStore(url=request.getfixturevalue("redis_url"))
    yield redis_store
    await redis_store.close()


class Harness:
    """The engine wired to a recording sender, and helpers to log in."""

    def __init__(
        self,
        enrolments: SqlEnrolmentStore,
        store: SharedState,
        clock: FakeClock,
        send_limits: limits.SendLimits = NO_LIMITS,
        lockout: limits.Lockout | None = None,
    ) -> None:
        self.sender = RecordingMessageSender()
        self.store = store
        self.auth = Logins(
            users=enrolments,
            store=store,
            clock=clock,
            sender=self.sender,
            settings=Settings(
                send_limits=send_limits,
                lockout=lockout or limits.Lockout(),
                code_key=b"k" * 32,
                can_send=True,
                can_approve=True,
            ),
        )
        self.clock = clock

    def kinds(self) -> list[str]:
        """What was sent, in order: ``sms`` for a text, ``call`` for a call."""
        return ["sms" if isinstance(m, CodeText) else "call" for m in self.sender.messages]

    async def login(
        self,
        policy: ClientPolicy = POLICY,
        *,
        user: str = "pat",
        password: bytes | None = PASSWORD,
        state: bytes | None = None,
    ) -> Outcome:
        attempt = AuthAttempt(
            username=user,
            raw_username=user,
            password=password,
            state=state,
            client="vpn",
            src_ip="127.0.0.1",
        )
        return await self.auth.authenticate(
            attempt, Profile(policy=policy, primary=StaticPrimary(PASSWORD, ATTRS))
        )

    async def challenge(
        self, policy: ClientPolicy = POLICY, *, user: str = "pat"
    ) -> ChallengeReply:
        outcome = await self.login(policy, user=user)
        assert isinstance(outcome, ChallengeReply), outcome
        return outcome


@pytest.fixture
def harness(enrolments: SqlEnrolmentStore, store: SharedState, clock: FakeClock) -> Harness:
    return Harness(enrolments, store, clock)


class TestSms:
    async def test_code_by_text_message_logs_in(self, harness: Harness) -> None:
        """Password, one text with the code, the code: Accept with the primary's attributes."""
        reply = await harness.challenge()
        assert harness.kinds() == ["sms"]
        sent = harness.sender.messages[0]
        assert isinstance(sent, CodeText)
        assert sent.to == PHONE
        assert sent.sender == "+12025550143"
        assert sent.body.startswith("Example Corp sign-in code: ")
        assert reply.prompt == "Enter the 6-digit code sent by text message to *********23"
        code = harness.sender.last_code()
        outcome = await harness.login(password=code.encode(), state=reply.state)
        assert outcome == Accept(AcceptReason.MFA_OK, ATTRS)

    async def test_wrong_code_challenges_again_without_a_new_text(self, harness: Harness) -> None:
        """A wrong code re-challenges; no second message is sent."""
        reply = await harness.challenge()
        wrong = "000000" if harness.sender.last_code() != "000000" else "111111"
        outcome = await harness.login(password=wrong.encode(), state=reply.state)
        assert isinstance(outcome, ChallengeReply)
        assert len(harness.sender.messages) == 1

    async def test_sent_code_is_good_for_its_own_challenge_only(self, harness: Harness) -> None:
        """A code texted for one challenge does not finish another."""
        await harness.challenge()
        first_code = harness.sender.last_code()
        harness.clock.advance(1)
        second = await harness.challenge()
        outcome = await harness.login(password=first_code.encode(), state=second.state)
        # the two random codes coincide one time in a million; then the code is the right one
        assert isinstance(outcome, ChallengeReply) or harness.sender.last_code() == first_code

    async def test_no_text_for_a_wrong_password(self, harness: Harness) -> None:
        """Nothing is sent before the password is right (SMS bombing)."""
        outcome = await harness.login(password=b"wrong")
        assert outcome == Reject(RejectReason.BAD_PASSWORD)
        assert harness.sender.messages == []


class TestMenu:
    POLICY = replace(POLICY, factors=(Factor.TOTP, Factor.SMS, Factor.VOICE))

    async def test_prompt_offers_the_other_factors(self, harness: Harness) -> None:
        """An app user with a phone is asked for the app code, with texts and calls offered."""
        reply = await harness.challenge(self.POLICY, user="alice")
        assert reply.prompt.endswith("(or type 1 for a text message or 2 for a call)")
        assert harness.sender.messages == []

    async def test_typing_1_sends_a_text_once(self, harness: Harness) -> None:
        """'1' sends a text; '1' again does not send another."""
        reply = await harness.challenge(self.POLICY, user="alice")
        again = await harness.login(self.POLICY, user="alice", password=b"1", state=reply.state)
        assert isinstance(again, ChallengeReply)
        assert "text message" in again.prompt
        once_more = await harness.login(self.POLICY, user="alice", password=b"1", state=reply.state)
        assert isinstance(once_more, ChallengeReply)
        assert harness.kinds() == ["sms"]

    async def test_call_after_text_reads_a_code_that_logs_in(self, harness: Harness) -> None:
        """A user who did not get the text asks for a call at the same prompt, and gets in."""
        reply = await harness.challenge(self.POLICY, user="alice")
        await harness.login(self.POLICY, user="alice", password=b"1", state=reply.state)
        harness.clock.advance(1)
        call = await harness.login(self.POLICY, user="alice", password=b"2", state=reply.state)
        assert isinstance(call, ChallengeReply)
        assert harness.kinds() == ["sms", "call"]
        code = harness.sender.last_code()
        outcome = await harness.login(
            self.POLICY, user="alice", password=code.encode(), state=reply.state
        )
        assert outcome == Accept(AcceptReason.MFA_OK, ATTRS)

    async def test_call_speaks_the_users_language(
        self, harness: Harness, enrolments: SqlEnrolmentStore
    ) -> None:
        """A user with a language of their own hears the call in it, not the profile's."""
        await enrolments.update_user("alice", language="de-DE")
        reply = await harness.challenge(self.POLICY, user="alice")
        await harness.login(self.POLICY, user="alice", password=b"2", state=reply.state)
        call = harness.sender.messages[-1]
        assert isinstance(call, CodeCall)
        assert call.language == "de-DE"

    async def test_app_code_still_works_at_the_menu(self, harness: Harness) -> None:
        """The app code is accepted at the menu prompt."""
        reply = await harness.challenge(self.POLICY, user="alice")
        code = otp.hotp(TOTP_SECRET, otp.timecode(harness.clock.now(), 30))
        outcome = await harness.login(
            self.POLICY, user="alice", password=code.encode(), state=reply.state
        )
        assert outcome == Accept(AcceptReason.MFA_OK, ATTRS)


class TestLimits:
    async def test_cooldown_refuses_a_second_text_at_once(
        self, enrolments: SqlEnrolmentStore, store: SharedState, clock: FakeClock
    ) -> None:
        """Two logins seconds apart: the second gets send_limited and no text."""
        harness = Harness(enrolments, store, clock, replace(NO_LIMITS, cooldown=60.0))
        await harness.challenge()
        outcome = await harness.login()
        assert outcome == Reject(RejectReason.SEND_LIMITED)
        assert len(harness.sender.messages) == 1

    async def test_per_user_limit_refuses_past_the_count(
        self, enrolments: SqlEnrolmentStore, store: SharedState, clock: FakeClock
    ) -> None:
        """With 2 sends per hour, the third login in the hour sends nothing."""
        harness = Harness(
            enrolments, store, clock, replace(NO_LIMITS, per_user=limits.Rate(2, 3600))
        )
        outcomes = []
        for _ in range(3):
            outcomes.append(await harness.login())
            clock.advance(1)
        assert isinstance(outcomes[1], ChallengeReply)
        assert outcomes[2] == Reject(RejectReason.SEND_LIMITED)
        assert len(harness.sender.messages) == 2

    @pytest.mark.parametrize(
        "send_limits",
        [
            replace(NO_LIMITS, per_number=limits.Rate(1, 3600)),
            replace(NO_LIMITS, per_region=limits.Rate(1, 3600)),
            replace(NO_LIMITS, daily=1),
        ],
        ids=["per-number", "per-country", "daily"],
    )
    async def test_number_country_and_daily_limits_hold_across_users(
        self,
        enrolments: SqlEnrolmentStore,
        store: SharedState,
        clock: FakeClock,
        send_limits: limits.SendLimits,
    ) -> None:
        """Two users sharing a number and a country: the second text is over the limit."""
        harness = Harness(enrolments, store, clock, send_limits)
        await harness.challenge(user="pat")
        outcome = await harness.login(user="alice")  # same number, same country
        assert outcome == Reject(RejectReason.SEND_LIMITED)
        assert len(harness.sender.messages) == 1

    async def test_disallowed_country_is_not_texted(self, harness: Harness) -> None:
        """A French number under allowed_countries = US is not a usable factor."""
        policy = replace(POLICY, allowed_regions=frozenset({"US"}))
        outcome = await harness.login(policy, user="fred")
        assert outcome == Reject(RejectReason.NOT_ENROLLED)
        assert harness.sender.messages == []


class TestDeliveryFailures:
    async def test_refused_number_rejects_with_its_reason(self, harness: Harness) -> None:
        """A 4xx from the provider rejects the login as delivery_rejected."""
        harness.sender.fail = "permanent"
        assert await harness.login() == Reject(RejectReason.DELIVERY_REJECTED)

    async def test_provider_outage_follows_fail_mode(self, harness: Harness) -> None:
        """An outage rejects in secure mode and accepts after the password in safe mode."""
        harness.sender.fail = "outage"
        assert await harness.login() == Reject(RejectReason.DELIVERY_UNAVAILABLE)
        harness.clock.advance(1)
        safe = replace(POLICY, fail_mode=FailMode.SAFE)
        assert await harness.login(safe) == Accept(AcceptReason.FAIL_SAFE, ATTRS)


class TestFailedSendsGiveBack:
    TIGHT = limits.SendLimits(
        per_user=limits.Rate(2, 3600),
        per_number=limits.Rate(2, 3600),
        per_region=limits.Rate(2, 3600),
        daily=2,
        cooldown=0.001,  # Redis keeps real time: 1 ms has passed by the next login
    )

    @pytest.mark.parametrize(
        ("fail", "reason"),
        [
            ("outage", RejectReason.DELIVERY_UNAVAILABLE),
            ("permanent", RejectReason.DELIVERY_REJECTED),
        ],
        ids=["outage", "refused"],
    )
    async def test_user_is_not_send_limited_when_the_provider_recovers(
        self,
        enrolments: SqlEnrolmentStore,
        store: SharedState,
        clock: FakeClock,
        fail: str,
        reason: RejectReason,
    ) -> None:
        """Five failed sends under a limit of two: once the provider is back, the code is sent."""
        harness = Harness(enrolments, store, clock, self.TIGHT)
        harness.sender.fail = fail
        for _ in range(5):
            assert await harness.login() == Reject(reason)
            clock.advance(1)
        harness.sender.fail = ""
        await harness.challenge()
        assert harness.kinds() == ["sms"]
        assert await store.peek_count("send:user:pat") == 1
        assert await store.peek_count(f"send:number:{PHONE}") == 1

    async def test_cooldown_still_spaces_retries_after_a_failed_send(
        self, enrolments: SqlEnrolmentStore, store: SharedState, clock: FakeClock
    ) -> None:
        """A failed send gives its counts back but not its cool-down: an instant retry waits."""
        harness = Harness(enrolments, store, clock, replace(self.TIGHT, cooldown=60.0))
        harness.sender.fail = "outage"
        assert await harness.login() == Reject(RejectReason.DELIVERY_UNAVAILABLE)
        harness.sender.fail = ""
        assert await harness.login() == Reject(RejectReason.SEND_LIMITED)
        assert harness.sender.messages == []


class TestLockout:
    async def test_wrong_codes_lock_the_user_and_unlock_clears_it(
        self, enrolments: SqlEnrolmentStore, store: SharedState, clock: FakeClock
    ) -> None:
        """Three wrong codes lock the user out; deleting the counters (unlock) lets them in."""
        harness = Harness(
            enrolments,
            store,
            clock,
            lockout=limits.Lockout(threshold=3, base_delay=600, max_delay=600),
        )
        reasons = []
        for _ in range(3):
            reply = await harness.challenge()
            clock.advance(1)
            outcome = await harness.login(password=b"999999", state=reply.state)
            reasons.append(outcome)
        assert reasons[-1] == Reject(RejectReason.LOCKED_OUT)
        assert await harness.login() == Reject(RejectReason.LOCKED_OUT)
        await store.delete(limits.failures_key("pat"), limits.lock_key("pat"))
        assert isinstance(await harness.login(), ChallengeReply)

    async def test_unknown_password_cannot_lock_anyone(self, harness: Harness) -> None:
        """Wrong passwords never count towards the lockout."""
        for _ in range(10):
            await harness.login(password=b"wrong")
        assert isinstance(await harness.login(), ChallengeReply)


class TestApprove:
    POLICY = replace(POLICY, mode=Mode.APPROVE, factors=(Factor.APPROVE,), response_window=3.0)

    async def _press(self, harness: Harness, value: str) -> Outcome:
        login = asyncio.ensure_future(harness.login(self.POLICY))
        for _ in range(200):
            if harness.sender.messages:
                break
            await asyncio.sleep(0.005)
        await harness.store.publish_result(harness.sender.approve_token(), value, 60)
        return await login

    async def test_key_1_approves(self, harness: Harness) -> None:
        """The user presses 1 on the call: Access-Accept with the primary's attributes."""
        assert await self._press(harness, "approve") == Accept(AcceptReason.MFA_OK, ATTRS)
        call = harness.sender.messages[0]
        assert isinstance(call, ApproveCall)
        assert call.organisation == "Example Corp"

    async def test_fraud_report_rejects_and_locks(self, harness: Harness) -> None:
        """Pressing 9 rejects, and the user is locked out."""
        assert await self._press(harness, "fraud") == Reject(RejectReason.FRAUD_REPORTED)
        assert await harness.login(self.POLICY) == Reject(RejectReason.LOCKED_OUT)

    async def test_no_key_rejects_within_the_window(self, harness: Harness) -> None:
        """Nobody answers: Reject(approval_timeout) before the NAS's window ends.

        The wait ends a margin before the window: had the window run out first, the reason
        would be ``timeout``.
        """
        async with asyncio.timeout(10):  # a hang fails the test; speed is not timed
            outcome = await harness.login(replace(self.POLICY, response_window=1.0))
        assert outcome == Reject(RejectReason.APPROVAL_TIMEOUT)
