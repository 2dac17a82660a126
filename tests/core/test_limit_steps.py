"""The lockout and send-limit steps of core/limits.py, driven with scripted counter values."""

from __future__ import annotations

import pytest

from mfa_radius.core.audit import Notes, Notice
from mfa_radius.core.effects import (
    Backend,
    BackendFailure,
    Count,
    Failed,
    Forget,
    MarkOnce,
    PeekCount,
    Uncount,
)
from mfa_radius.core.limits import (
    DAY,
    Lockout,
    Rate,
    SendLimits,
    clear_failures,
    count_failure,
    give_back,
    lock_for_fraud,
    locked,
    within_limits,
)
from tests.support.script import Answer, drive

NOW = 1_700_000_000.0
PHONE = "+14155550123"
LIMITS = SendLimits(
    per_user=Rate(5, 3600.0),
    per_number=Rate(6, 1800.0),
    per_region=Rate(100, 7200.0),
    daily=1000,
    cooldown=20.0,
)
LOCKOUT = Lockout(threshold=5, base_delay=60.0, max_delay=600.0, memory=86_400.0)
COOLDOWN = MarkOnce("send:cooldown:alice", 20.0)
COUNTERS = [
    (Count("send:user:alice", 3600.0), 5, "user_send_limit"),
    (Count(f"send:number:{PHONE}", 1800.0), 6, "number_send_limit"),
    (Count("send:region:US", 7200.0), 100, "region_send_limit"),
    (Count(f"send:day:{int(NOW // DAY)}", DAY), 1000, "daily_send_limit"),
]
STORE_DOWN = Failed(Backend.STORE, "ConnectionError")


class TestWithinLimits:
    def test_allows_a_send_when_every_counter_is_within_its_limit(self) -> None:
        """The cool-down mark is set first, then each counter is counted once; all within: True."""
        notes = Notes()
        script: list[Answer] = [(COOLDOWN, True), *((c, limit) for c, limit, _ in COUNTERS)]
        allowed, seen = drive(
            within_limits(LIMITS, username="alice", phone=PHONE, now=NOW, notes=notes), script
        )
        assert allowed is True
        assert seen == [COOLDOWN, *(count for count, _, _ in COUNTERS)]
        assert notes.freeze().limit is None

    def test_refuses_without_counting_when_cooling_down(self) -> None:
        """A second send within the cool-down is refused before any counter is spent."""
        notes = Notes()
        allowed, seen = drive(
            within_limits(LIMITS, username="alice", phone=PHONE, now=NOW, notes=notes),
            [(COOLDOWN, False)],
        )
        assert allowed is False
        assert seen == [COOLDOWN]
        assert notes.freeze().limit == "cooldown"

    @pytest.mark.parametrize("hit", range(len(COUNTERS)), ids=[reason for _, _, reason in COUNTERS])
    def test_refuses_and_notes_the_reason_when_a_counter_is_over_its_limit(self, hit: int) -> None:
        """The first counter over its limit refuses the send, is noted, and stops the counting."""
        notes = Notes()
        script: list[Answer] = [(COOLDOWN, True)]
        script += [(count, limit) for count, limit, _ in COUNTERS[:hit]]
        script.append((COUNTERS[hit][0], COUNTERS[hit][1] + 1))
        allowed, seen = drive(
            within_limits(LIMITS, username="alice", phone=PHONE, now=NOW, notes=notes), script
        )
        assert allowed is False
        assert len(seen) == hit + 2
        assert notes.freeze().limit == COUNTERS[hit][2]

    def test_names_the_region_zz_when_the_number_has_no_region(self) -> None:
        """An unparsable number is counted under the unknown region ``ZZ``."""
        notes = Notes()
        script: list[Answer] = [
            (COOLDOWN, True),
            (Count("send:user:alice", 3600.0), 1),
            (Count("send:number:bogus", 1800.0), 1),
            (Count("send:region:ZZ", 7200.0), 1),
            (Count(f"send:day:{int(NOW // DAY)}", DAY), 1),
        ]
        allowed, _ = drive(
            within_limits(LIMITS, username="alice", phone="bogus", now=NOW, notes=notes), script
        )
        assert allowed is True

    def test_raises_backend_failure_when_the_store_is_down(self) -> None:
        """A counter that cannot be read is a backend failure, not a silent allow."""
        steps = within_limits(LIMITS, username="alice", phone=PHONE, now=NOW, notes=Notes())
        with pytest.raises(BackendFailure) as raised:
            drive(steps, [(COOLDOWN, STORE_DOWN)])
        assert raised.value.failed is STORE_DOWN


class TestGiveBack:
    def test_takes_one_back_from_every_counter_the_send_was_counted_on(self) -> None:
        """Each counter within_limits counts is given back once; the cool-down mark is not."""
        script: list[Answer] = [(Uncount(count.key), 0) for count, _, _ in COUNTERS]
        result, seen = drive(give_back(LIMITS, username="alice", phone=PHONE, now=NOW), script)
        assert result is None
        assert seen == [Uncount(count.key) for count, _, _ in COUNTERS]
        assert all(effect.key != COOLDOWN.key for effect in seen if isinstance(effect, Uncount))

    def test_names_the_same_counters_as_within_limits(self) -> None:
        """What is given back is exactly what was counted, down to the region and the day."""
        counted, counted_seen = drive(
            within_limits(LIMITS, username="alice", phone="bogus", now=NOW, notes=Notes()),
            [(COOLDOWN, True), (Count, 1), (Count, 1), (Count, 1), (Count, 1)],
        )
        assert counted is True
        keys = [effect.key for effect in counted_seen if isinstance(effect, Count)]
        _, seen = drive(
            give_back(LIMITS, username="alice", phone="bogus", now=NOW),
            [(Uncount(key), 0) for key in keys],
        )
        assert [effect.key for effect in seen if isinstance(effect, Uncount)] == keys

    def test_stops_quietly_when_the_store_cannot_take_a_count_back(self) -> None:
        """A store failure leaves the remaining counts as they are and raises nothing."""
        first = COUNTERS[0][0]
        result, seen = drive(
            give_back(LIMITS, username="alice", phone=PHONE, now=NOW),
            [(Uncount(first.key), STORE_DOWN)],
        )
        assert result is None
        assert seen == [Uncount(first.key)]


class TestCountFailure:
    @pytest.mark.parametrize(
        ("failures", "delay"),
        [(5, 60.0), (6, 120.0), (7, 240.0), (8, 480.0), (9, 600.0), (20, 600.0)],
        ids=["threshold", "doubles", "doubles-again", "doubles-thrice", "capped", "still-capped"],
    )
    def test_locks_for_a_doubling_delay_when_at_or_past_the_threshold(
        self, failures: int, delay: float
    ) -> None:
        """From the threshold on, the lock lasts base_delay doubled per failure, up to max_delay."""
        notes = Notes()
        lock = Count("lock:alice", delay)
        is_locked, seen = drive(
            count_failure("alice", LOCKOUT, notes),
            [(Count("fail:alice", 86_400.0), failures), (lock, 1)],
        )
        assert is_locked is True
        assert seen == [Count("fail:alice", 86_400.0), lock]
        assert notes.freeze().notices == (
            Notice("user_locked", (("failures", failures), ("seconds", delay))),
        )

    @pytest.mark.parametrize("failures", [1, 4], ids=["first", "one-below-threshold"])
    def test_only_counts_when_below_the_threshold(self, failures: int) -> None:
        """Below the threshold a wrong code is counted and nothing is locked or noticed."""
        notes = Notes()
        is_locked, seen = drive(
            count_failure("alice", LOCKOUT, notes), [(Count("fail:alice", 86_400.0), failures)]
        )
        assert is_locked is False
        assert seen == [Count("fail:alice", 86_400.0)]
        assert notes.freeze().notices == ()


class TestLocked:
    @pytest.mark.parametrize(
        ("count", "expected"), [(0, False), (1, True), (3, True)], ids=["none", "one", "several"]
    )
    def test_is_locked_when_the_lock_counter_is_present(self, count: int, expected: bool) -> None:
        """The lock counter is peeked (never incremented); any positive value means locked."""
        is_locked, seen = drive(locked("alice"), [(PeekCount("lock:alice"), count)])
        assert is_locked is expected
        assert seen == [PeekCount("lock:alice")]


class TestClearFailures:
    def test_forgets_the_wrong_code_counter(self) -> None:
        """A successful login forgets the user's wrong codes, and only those."""
        result, seen = drive(clear_failures("alice"), [(Forget(("fail:alice",)), None)])
        assert result is None
        assert seen == [Forget(("fail:alice",))]


class TestLockForFraud:
    def test_locks_for_the_longest_lockout(self) -> None:
        """A fraud report locks the user for max_delay at once."""
        result, seen = drive(lock_for_fraud("alice", LOCKOUT), [(Count("lock:alice", 600.0), 1)])
        assert result is None
        assert seen == [Count("lock:alice", 600.0)]
