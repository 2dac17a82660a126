"""The engine: whole logins through real stores and a real SQLite enrolment database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from mfa_radius.adapters.aesgcm_keyring import Keyring
from mfa_radius.adapters.argon2_primary import Argon2PrimaryAuthenticator, hash_password
from mfa_radius.adapters.memory_store import MemoryChallengeStore
from mfa_radius.adapters.redis_store import RedisChallengeStore
from mfa_radius.adapters.sql_enrolments import SqlEnrolmentStore
from mfa_radius.core import otp
from mfa_radius.core.audit import Notice
from mfa_radius.core.model import (
    Accept,
    AcceptReason,
    AuthAttempt,
    ChallengeReply,
    FailMode,
    Mode,
    Outcome,
    Reject,
    RejectReason,
    Unenrolled,
)
from mfa_radius.core.policy import ClientPolicy
from mfa_radius.engine import NoPrimary, Profile
from mfa_radius.ports import SharedState
from tests.support.clock import FakeClock
from tests.support.logins import Logins
from tests.support.primaries import StaticPrimary
from tests.support.redis_server import RedisServer

TOTP_SECRET = b"0123456789abcdefghij"
PASSWORD = b"correct horse"
ATTRS = ((25, b"class-vpn"), (11, b"filter-staff"))
POLICY = ClientPolicy(name="vpn", max_attempts=3, challenge_ttl=300.0, response_window=5.0)


def code_at(clock: FakeClock, offset_steps: int = 0) -> str:
    return otp.hotp(TOTP_SECRET, otp.timecode(clock.now(), 30) + offset_steps)


@pytest.fixture
async def enrolments(tmp_path: Path) -> AsyncIterator[SqlEnrolmentStore]:
    keyring = Keyring.from_text(Keyring.generate_line("k1"), source="test")
    store = await SqlEnrolmentStore.open(
        f"sqlite+aiosqlite:///{tmp_path / 'e.db'}", keyring, create=True
    )
    await store.add_user("alice", display_name="Alice")
    await store.add_totp("alice", TOTP_SECRET)
    await store.set_password_hash("alice", hash_password(PASSWORD.decode()))
    await store.add_user("bob")
    yield store
    await store.close()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[SharedState]:
    if request.param == "memory":
        yield MemoryChallengeStore(clock)
        return
    url: str = request.getfixturevalue("redis_url")
    redis_store = RedisChallengeStore(url=url)
    yield redis_store
    await redis_store.close()


@pytest.fixture
def authenticator(enrolments: SqlEnrolmentStore, store: SharedState, clock: FakeClock) -> Logins:
    return Logins(users=enrolments, store=store, clock=clock)


def attempt(
    password: bytes | None, *, state: bytes | None = None, user: str = "alice", client: str = "vpn"
) -> AuthAttempt:
    return AuthAttempt(
        username=user,
        raw_username=user,
        password=password,
        state=state,
        client=client,
        src_ip="127.0.0.1",
    )


def profile(policy: ClientPolicy = POLICY, primary: StaticPrimary | None = None) -> Profile:
    return Profile(policy=policy, primary=primary or StaticPrimary(PASSWORD, ATTRS))


async def challenge(auth: Logins, prof: Profile | None = None) -> ChallengeReply:
    outcome = await auth.authenticate(attempt(PASSWORD), prof or profile())
    assert isinstance(outcome, ChallengeReply)
    return outcome


class TestChallengeMode:
    async def test_right_code_accepts_with_primary_attributes(
        self, authenticator: Logins, clock: FakeClock
    ) -> None:
        """Password, challenge, right code: Accept carrying the primary's attributes."""
        reply = await challenge(authenticator)
        assert len(reply.state) == 16
        assert reply.prompt == "Enter the 6-digit code from your authenticator app"
        outcome = await authenticator.authenticate(
            attempt(code_at(clock).encode(), state=reply.state), profile()
        )
        assert outcome == Accept(AcceptReason.MFA_OK, ATTRS)

    async def test_wrong_password_rejects_without_challenge(self, authenticator: Logins) -> None:
        """A wrong password is rejected in round one."""
        outcome = await authenticator.authenticate(attempt(b"wrong"), profile())
        assert outcome == Reject(RejectReason.BAD_PASSWORD)

    async def test_missing_password_rejects(self, authenticator: Logins) -> None:
        """No User-Password at all is rejected before the backend is asked."""
        primary = StaticPrimary(PASSWORD)
        outcome = await authenticator.authenticate(attempt(None), profile(primary=primary))
        assert outcome == Reject(RejectReason.MISSING_PASSWORD)
        assert primary.calls == 0

    async def test_wrong_codes_rechallenge_then_reject(
        self, authenticator: Logins, clock: FakeClock
    ) -> None:
        """Two wrong codes re-challenge with attempts left; the third rejects for good."""
        reply = await challenge(authenticator)
        outcomes: list[Outcome] = []
        for _ in range(3):
            outcomes.append(
                await authenticator.authenticate(attempt(b"000000", state=reply.state), profile())
            )
        assert outcomes[0] == ChallengeReply(
            reply.state,
            "Wrong code, 2 attempt(s) left. Enter the 6-digit code",
            RejectReason.BAD_CODE,
        )
        assert outcomes[1] == ChallengeReply(
            reply.state,
            "Wrong code, 1 attempt(s) left. Enter the 6-digit code",
            RejectReason.BAD_CODE,
        )
        assert outcomes[2] == Reject(RejectReason.TOO_MANY_ATTEMPTS)
        late = await authenticator.authenticate(
            attempt(code_at(clock).encode(), state=reply.state), profile()
        )
        assert late == Reject(RejectReason.UNKNOWN_STATE)

    async def test_state_is_one_shot(self, authenticator: Logins, clock: FakeClock) -> None:
        """After an Accept the same State never accepts again."""
        reply = await challenge(authenticator)
        first = await authenticator.authenticate(
            attempt(code_at(clock).encode(), state=reply.state), profile()
        )
        second = await authenticator.authenticate(
            attempt(code_at(clock, -1).encode(), state=reply.state), profile()
        )
        assert isinstance(first, Accept)
        assert second == Reject(RejectReason.UNKNOWN_STATE)

    async def test_code_is_accepted_once_per_step(
        self, authenticator: Logins, clock: FakeClock
    ) -> None:
        """A code used in one login is refused in the next (replay), which re-challenges."""
        code = code_at(clock).encode()
        first = await challenge(authenticator)
        assert isinstance(
            await authenticator.authenticate(attempt(code, state=first.state), profile()), Accept
        )
        second = await challenge(authenticator)
        outcome = await authenticator.authenticate(attempt(code, state=second.state), profile())
        assert isinstance(outcome, ChallengeReply)

    async def test_concurrent_right_codes_accept_exactly_once(
        self, authenticator: Logins, clock: FakeClock
    ) -> None:
        """Two requests racing with the same State and code: exactly one Accept."""
        reply = await challenge(authenticator)
        code = code_at(clock).encode()
        results = await asyncio.gather(
            *(
                authenticator.authenticate(attempt(code, state=reply.state), profile())
                for _ in range(5)
            )
        )
        assert sum(isinstance(r, Accept) for r in results) == 1

    async def test_state_of_another_user_is_refused(
        self, authenticator: Logins, clock: FakeClock
    ) -> None:
        """Bob cannot finish Alice's challenge."""
        reply = await challenge(authenticator)
        outcome = await authenticator.authenticate(
            attempt(code_at(clock).encode(), state=reply.state, user="bob"), profile()
        )
        assert outcome == Reject(RejectReason.STATE_MISMATCH)

    async def test_state_from_another_client_is_refused(
        self, authenticator: Logins, clock: FakeClock
    ) -> None:
        """A State issued to one NAS is useless at another."""
        reply = await challenge(authenticator)
        outcome = await authenticator.authenticate(
            attempt(code_at(clock).encode(), state=reply.state, client="other"), profile()
        )
        assert outcome == Reject(RejectReason.STATE_MISMATCH)

    async def test_expired_challenge_is_refused(
        self, authenticator: Logins, clock: FakeClock
    ) -> None:
        """After the challenge TTL the State is unknown (checked against the record expiry)."""
        reply = await challenge(authenticator)
        clock.advance(301)
        outcome = await authenticator.authenticate(
            attempt(code_at(clock).encode(), state=reply.state), profile()
        )
        assert outcome == Reject(RejectReason.UNKNOWN_STATE)

    async def test_forged_state_is_refused(self, authenticator: Logins, clock: FakeClock) -> None:
        """A State the proxy never issued is unknown."""
        outcome = await authenticator.authenticate(
            attempt(code_at(clock).encode(), state=b"\x00" * 16), profile()
        )
        assert outcome == Reject(RejectReason.UNKNOWN_STATE)


class TestEnrolmentPolicy:
    async def test_unenrolled_user_is_rejected_by_default(self, authenticator: Logins) -> None:
        """Bob has no token: Reject(not_enrolled)."""
        outcome = await authenticator.authenticate(attempt(PASSWORD, user="bob"), profile())
        assert outcome == Reject(RejectReason.NOT_ENROLLED)

    async def test_unenrolled_user_is_accepted_when_allowed(self, authenticator: Logins) -> None:
        """unenrolled = accept lets Bob in with the primary's attributes."""
        prof = profile(replace(POLICY, unenrolled=Unenrolled.ACCEPT))
        outcome = await authenticator.authenticate(attempt(PASSWORD, user="bob"), prof)
        assert outcome == Accept(AcceptReason.UNENROLLED_ALLOWED, ATTRS)

    async def test_disabled_user_is_rejected(
        self, authenticator: Logins, enrolments: SqlEnrolmentStore
    ) -> None:
        """A disabled user is rejected after the password."""
        await enrolments.set_disabled("alice", True)
        outcome = await authenticator.authenticate(attempt(PASSWORD), profile())
        assert outcome == Reject(RejectReason.USER_DISABLED)

    async def test_mode_none_checks_only_the_password(self, authenticator: Logins) -> None:
        """mode = none accepts on the password alone."""
        outcome = await authenticator.authenticate(
            attempt(PASSWORD), profile(replace(POLICY, mode=Mode.NONE))
        )
        assert outcome == Accept(AcceptReason.PRIMARY_ONLY, ATTRS)


class TestAppendMode:
    async def test_password_and_code_in_one_request(
        self, authenticator: Logins, clock: FakeClock
    ) -> None:
        """password,code is accepted in one round."""
        prof = profile(replace(POLICY, mode=Mode.APPEND))
        outcome = await authenticator.authenticate(
            attempt(PASSWORD + b"," + code_at(clock).encode()), prof
        )
        assert outcome == Accept(AcceptReason.MFA_OK, ATTRS)

    async def test_wrong_appended_code_rejects(self, authenticator: Logins) -> None:
        """A wrong code rejects at once."""
        prof = profile(replace(POLICY, mode=Mode.APPEND))
        outcome = await authenticator.authenticate(attempt(PASSWORD + b",000000"), prof)
        assert outcome == Reject(RejectReason.BAD_CODE)

    async def test_missing_appended_code_rejects(self, authenticator: Logins) -> None:
        """The password alone is not enough for an enrolled user."""
        prof = profile(replace(POLICY, mode=Mode.APPEND))
        outcome = await authenticator.authenticate(attempt(PASSWORD), prof)
        assert outcome == Reject(RejectReason.BAD_CODE_FORMAT)

    async def test_replayed_appended_code_rejects(
        self, authenticator: Logins, clock: FakeClock
    ) -> None:
        """The same password,code twice: the second is a replay."""
        prof = profile(replace(POLICY, mode=Mode.APPEND))
        password = PASSWORD + b"," + code_at(clock).encode()
        assert isinstance(await authenticator.authenticate(attempt(password), prof), Accept)
        outcome = await authenticator.authenticate(attempt(password), prof)
        assert outcome == Reject(RejectReason.CODE_REPLAYED)


class TestLocalPrimary:
    async def test_local_password_then_code(
        self, enrolments: SqlEnrolmentStore, store: SharedState, clock: FakeClock
    ) -> None:
        """The argon2 backend checks the password kept in the enrolment database."""
        auth = Logins(users=enrolments, store=store, clock=clock)
        primary = Argon2PrimaryAuthenticator(enrolments)
        try:
            prof = Profile(policy=POLICY, primary=primary)
            reply = await auth.authenticate(attempt(PASSWORD), prof)
            assert isinstance(reply, ChallengeReply)
            wrong = await auth.authenticate(attempt(b"nope"), prof)
            unknown = await auth.authenticate(attempt(PASSWORD, user="carol"), prof)
            done = await auth.authenticate(
                attempt(code_at(clock).encode(), state=reply.state), prof
            )
        finally:
            primary.close()
        assert wrong == Reject(RejectReason.BAD_PASSWORD)
        assert unknown == Reject(RejectReason.UNKNOWN_USER)
        assert done == Accept(AcceptReason.MFA_OK)

    async def test_gateway_checked_primary_accepts_any_password(
        self, authenticator: Logins, clock: FakeClock
    ) -> None:
        """primary = none: the code is still required."""
        prof = Profile(policy=POLICY, primary=NoPrimary())
        reply = await authenticator.authenticate(attempt(b"whatever"), prof)
        assert isinstance(reply, ChallengeReply)


class TestBackendFailures:
    @pytest.fixture
    def make_auth(
        self, enrolments: SqlEnrolmentStore, clock: FakeClock
    ) -> Callable[[SharedState], Logins]:
        def make(store: SharedState) -> Logins:
            return Logins(users=enrolments, store=store, clock=clock)

        return make

    async def test_redis_down_rejects_within_bounded_time_and_recovers(
        self,
        private_redis: RedisServer,
        make_auth: Callable[[SharedState], Logins],
        clock: FakeClock,
    ) -> None:
        """Redis stopped: fail mode secure rejects quickly; restarted: logins work again."""
        redis_store = RedisChallengeStore(
            url=private_redis.url, socket_timeout=0.3, connect_timeout=0.3
        )
        auth = make_auth(redis_store)
        try:
            private_redis.stop()
            async with asyncio.timeout(10):  # a generous bound: a hang fails, speed is not timed
                outcome = await auth.authenticate(attempt(PASSWORD), profile())
            assert outcome == Reject(RejectReason.STORE_UNAVAILABLE)
            private_redis.restart()
            assert isinstance(await auth.authenticate(attempt(PASSWORD), profile()), ChallengeReply)
        finally:
            await redis_store.close()

    async def test_redis_down_with_fail_mode_safe_accepts_after_password(
        self,
        private_redis: RedisServer,
        make_auth: Callable[[SharedState], Logins],
    ) -> None:
        """fail_mode = safe: the verified password is enough while the store is down."""
        redis_store = RedisChallengeStore(
            url=private_redis.url, socket_timeout=0.3, connect_timeout=0.3
        )
        auth = make_auth(redis_store)
        try:
            private_redis.stop()
            prof = profile(replace(POLICY, fail_mode=FailMode.SAFE))
            assert await auth.authenticate(attempt(PASSWORD), prof) == Accept(
                AcceptReason.FAIL_SAFE, ATTRS
            )
            assert await auth.authenticate(attempt(b"wrong"), prof) == Reject(
                RejectReason.BAD_PASSWORD
            )
        finally:
            await redis_store.close()

    async def test_redis_down_in_round_two_never_fails_open(
        self,
        private_redis: RedisServer,
        make_auth: Callable[[SharedState], Logins],
        clock: FakeClock,
    ) -> None:
        """Even with fail_mode = safe, a second round whose record cannot be read is rejected."""
        redis_store = RedisChallengeStore(
            url=private_redis.url, socket_timeout=0.3, connect_timeout=0.3
        )
        auth = make_auth(redis_store)
        prof = profile(replace(POLICY, fail_mode=FailMode.SAFE))
        try:
            reply = await auth.authenticate(attempt(PASSWORD), prof)
            assert isinstance(reply, ChallengeReply)
            private_redis.stop()
            outcome = await auth.authenticate(
                attempt(code_at(clock).encode(), state=reply.state), prof
            )
            assert outcome == Reject(RejectReason.STORE_UNAVAILABLE)
        finally:
            await redis_store.close()

    async def test_hung_redis_answers_within_the_response_window(
        self,
        private_redis: RedisServer,
        make_auth: Callable[[SharedState], Logins],
    ) -> None:
        """A Redis that stops answering (SIGSTOP) yields the fail-mode answer, not a hang.

        The store's own command deadline (0.5 s) ends the call before the response window
        (0.9 s of 1 s) does: the answer is the store's fail mode, not the window's timeout.
        """
        redis_store = RedisChallengeStore(
            url=private_redis.url, socket_timeout=5.0, connect_timeout=5.0, command_timeout=0.5
        )
        auth = make_auth(redis_store)
        try:
            await redis_store.ping()
            private_redis.pause()
            try:
                async with asyncio.timeout(10):  # a hang fails the test; speed is not timed
                    outcome = await auth.authenticate(
                        attempt(PASSWORD), profile(replace(POLICY, response_window=1.0))
                    )
            finally:
                private_redis.resume()
            assert outcome == Reject(RejectReason.STORE_UNAVAILABLE)
        finally:
            await redis_store.close()

    async def test_primary_down_rejects_even_in_fail_safe(self, authenticator: Logins) -> None:
        """An unreachable password backend never lets anyone in."""
        primary = StaticPrimary(PASSWORD)
        primary.down = True
        prof = profile(replace(POLICY, fail_mode=FailMode.SAFE), primary)
        outcome = await authenticator.authenticate(attempt(PASSWORD), prof)
        assert outcome == Reject(RejectReason.PRIMARY_UNAVAILABLE)


FULL_NOTICE = Notice("store_full", (("backend", "store"), ("error", "full")))


async def fill_with_marks(store: MemoryChallengeStore, count: int) -> None:
    """Take ``count`` entries of the store with marks nobody else uses."""
    for i in range(count):
        await store.mark_once(f"filler{i}", 3600.0)


class TestFullStore:
    @pytest.fixture
    def make_auth(
        self, enrolments: SqlEnrolmentStore, clock: FakeClock
    ) -> Callable[[SharedState], Logins]:
        def make(store: SharedState) -> Logins:
            return Logins(users=enrolments, store=store, clock=clock)

        return make

    @pytest.mark.parametrize("fail_mode", [FailMode.SECURE, FailMode.SAFE], ids=["secure", "safe"])
    async def test_full_memory_store_rejects_as_store_full_even_in_fail_mode_safe(
        self, make_auth: Callable[[SharedState], Logins], clock: FakeClock, fail_mode: FailMode
    ) -> None:
        """A right password on a full store is store_full with a warning, never fail-safe."""
        store = MemoryChallengeStore(clock, max_entries=10)
        auth = make_auth(store)
        await fill_with_marks(store, 10)
        decision = await auth.decide(
            attempt(PASSWORD), profile(replace(POLICY, fail_mode=fail_mode))
        )
        assert decision.outcome == Reject(RejectReason.STORE_FULL)
        assert decision.audit.notices == (FULL_NOTICE,)

    @pytest.mark.parametrize("code", ["right", "wrong"])
    async def test_full_memory_store_rejects_round_two_as_store_full(
        self, make_auth: Callable[[SharedState], Logins], clock: FakeClock, code: str
    ) -> None:
        """A challenge issued before the store filled up ends as store_full, not in a loop."""
        store = MemoryChallengeStore(clock, max_entries=10)
        auth = make_auth(store)
        prof = profile(replace(POLICY, fail_mode=FailMode.SAFE))
        reply = await challenge(auth, prof)
        await fill_with_marks(store, 9)
        answer = code_at(clock) if code == "right" else "000000"
        decision = await auth.decide(attempt(answer.encode(), state=reply.state), prof)
        assert decision.outcome == Reject(RejectReason.STORE_FULL)
        assert decision.audit.notices == (FULL_NOTICE,)

    async def test_one_user_cannot_fill_the_store(
        self, make_auth: Callable[[SharedState], Logins], clock: FakeClock
    ) -> None:
        """Many first rounds of one user keep only their newest challenges; bob still logs in."""
        store = MemoryChallengeStore(clock, max_entries=10, max_challenges_per_user=3)
        auth = make_auth(store)
        replies = [await challenge(auth) for _ in range(20)]
        assert len(store) <= 3
        oldest = await auth.authenticate(
            attempt(code_at(clock).encode(), state=replies[0].state), profile()
        )
        assert oldest == Reject(RejectReason.UNKNOWN_STATE)
        newest = await auth.authenticate(
            attempt(code_at(clock).encode(), state=replies[-1].state), profile()
        )
        assert newest == Accept(AcceptReason.MFA_OK, ATTRS)

    async def test_redis_out_of_memory_rejects_as_store_full_even_in_fail_mode_safe(
        self, private_redis: RedisServer, make_auth: Callable[[SharedState], Logins]
    ) -> None:
        """A Redis at maxmemory (noeviction) refusing the challenge is store_full, not an accept."""
        redis_store = RedisChallengeStore(url=private_redis.url)
        admin = Redis.from_url(private_redis.url)
        auth = make_auth(redis_store)
        try:
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")  # below what the server already uses
            prof = profile(replace(POLICY, fail_mode=FailMode.SAFE))
            decision = await auth.decide(attempt(PASSWORD), prof)
            assert decision.outcome == Reject(RejectReason.STORE_FULL)
            assert decision.audit.notices == (
                Notice("store_full", (("backend", "store"), ("error", "OutOfMemoryError"))),
            )
        finally:
            await redis_store.close()
            await admin.aclose()
