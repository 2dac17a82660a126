"""Abuse limits for text messages and calls, and the lockout for guessed codes.

Text messages and calls cost money and can be turned against users (SMS bombing) or against
the operator (toll fraud, premium-rate numbers). A message is only ever sent after a correct
password, and each send is counted per user, per number, per destination region and per day,
with a cool-down between two sends to the same user. The counters live in the challenge
store, so the limits hold for the whole cluster.

Wrong codes are counted per user across challenges; past a threshold the user is locked out
for a time that doubles with every further failure. The count starts only after a correct
password, so someone who knows only a username cannot lock its owner out.

A send is counted *before* it goes out, so that two nodes sending at the same moment cannot
both slip under a limit. A send the provider did not take (an outage, a refused number) then
gives its counts back (``give_back``): a provider outage must not spend the user's quota and
leave them ``send_limited`` once it recovers. The cool-down mark is not given back, so retries
during an outage are still spaced. A send that timed out may still have reached the user; it is
given back too, and then only the cool-down bounds such sends (one per ``cooldown`` seconds per
user). A request whose response window runs out during the send gives nothing back.

This module computes names, limits and back-off, and says which counters to touch as effects
(``Count``, ``Uncount``, ``MarkOnce``, ``PeekCount``, ``Forget``); the engine's runner performs
them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mfa_radius.core.audit import Notes
from mfa_radius.core.effects import (
    Count,
    Failed,
    Forget,
    MarkOnce,
    PeekCount,
    Steps,
    Uncount,
    ask,
)
from mfa_radius.core.phones import region_of

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` events per ``window`` seconds."""

    count: int
    window: float


@dataclass(frozen=True, slots=True)
class SendLimits:
    """How often codes may be sent.

    Attributes:
        per_user: sends per user.
        per_number: sends per destination number.
        per_region: sends per destination region (country).
        daily: sends per day for the whole deployment.
        cooldown: seconds between two sends to the same user.
    """

    per_user: Rate = Rate(5, 3600.0)
    per_number: Rate = Rate(5, 3600.0)
    per_region: Rate = Rate(1000, 3600.0)
    daily: int = 10_000
    cooldown: float = 20.0


@dataclass(frozen=True, slots=True)
class Lockout:
    """When wrong codes lock a user out.

    Attributes:
        threshold: wrong codes (across challenges) before the first lockout.
        base_delay: seconds of the first lockout; each further wrong code doubles it.
        max_delay: the longest lockout.
        memory: seconds a wrong code is remembered.
    """

    threshold: int = 5
    base_delay: float = 60.0
    max_delay: float = 3600.0
    memory: float = 86_400.0


def send_counters(
    limits: SendLimits, *, username: str, number: str, region: str, day: int
) -> list[tuple[str, Rate, str]]:
    """The counters one send increments, with their limit and the reason to log when hit.

    Args:
        limits: the configured limits.
        username: the normalised user.
        number: the E.164 destination.
        region: its ISO region.
        day: the current day number (epoch seconds // 86400), naming the daily counter.

    Returns:
        ``(counter key, rate, reason)`` for each limit.
    """
    return [
        (f"send:user:{username}", limits.per_user, "user_send_limit"),
        (f"send:number:{number}", limits.per_number, "number_send_limit"),
        (f"send:region:{region}", limits.per_region, "region_send_limit"),
        (f"send:day:{day}", Rate(limits.daily, DAY), "daily_send_limit"),
    ]


def cooldown_key(username: str) -> str:
    """The mark that spaces two sends to one user."""
    return f"send:cooldown:{username}"


def failures_key(username: str) -> str:
    """The counter of a user's wrong codes."""
    return f"fail:{username}"


def lock_key(username: str) -> str:
    """The counter whose presence means the user is locked out."""
    return f"lock:{username}"


def lockout_delay(failures: int, lockout: Lockout) -> float:
    """Seconds to lock a user out after ``failures`` wrong codes (0: not locked).

    The first lockout comes at ``threshold`` failures and lasts ``base_delay``; each further
    failure doubles it, up to ``max_delay``.
    """
    if failures < lockout.threshold:
        return 0.0
    return float(min(lockout.base_delay * 2 ** (failures - lockout.threshold), lockout.max_delay))


def locked(username: str) -> Steps[bool]:
    """Whether wrong codes have locked the user out for now."""
    return (yield from ask(PeekCount(lock_key(username)))) > 0


def count_failure(username: str, lockout: Lockout, notes: Notes) -> Steps[bool]:
    """Count one wrong code; lock the user when past the threshold. True when locked."""
    failures = yield from ask(Count(failures_key(username), lockout.memory))
    delay = lockout_delay(failures, lockout)
    if not delay:
        return False
    yield from ask(Count(lock_key(username), delay))
    notes.notice("user_locked", failures=failures, seconds=delay)
    return True


def clear_failures(username: str) -> Steps[None]:
    """Forget the user's wrong codes after a successful login."""
    yield from ask(Forget((failures_key(username),)))


def lock_for_fraud(username: str, lockout: Lockout) -> Steps[None]:
    """Lock the user for the longest lockout: they said the attempt was not theirs."""
    yield from ask(Count(lock_key(username), lockout.max_delay))


def within_limits(
    limits: SendLimits, *, username: str, phone: str, now: float, notes: Notes
) -> Steps[bool]:
    """Count one send against every limit; False (and the limit noted) when one is exceeded.

    The cool-down mark comes first, so a user hammering the prompt spends no counter.
    """
    if not (yield from ask(MarkOnce(cooldown_key(username), limits.cooldown))):
        notes.note(limit="cooldown")
        return False
    counters = send_counters(
        limits, username=username, number=phone, region=region_of(phone), day=int(now // DAY)
    )
    for key, rate, reason in counters:
        if (yield from ask(Count(key, rate.window))) > rate.count:
            notes.note(limit=reason)
            return False
    return True


def give_back(limits: SendLimits, *, username: str, phone: str, now: float) -> Steps[None]:
    """Take a send the provider did not accept back from every counter it was counted on.

    Called only after :func:`within_limits` allowed the send (so every counter was counted)
    and the provider then failed or refused it. The cool-down mark stays. Best effort: when
    the store cannot take a count back, the remaining counts stay as they are (the safe
    side, as before this step existed) and the caller's decision does not change; the
    engine logs the store's failure.

    Args:
        limits: the configured limits.
        username: the normalised user, as counted.
        phone: the E.164 destination, as counted.
        now: the request's time, as counted (it names the daily counter).
    """
    counters = send_counters(
        limits, username=username, number=phone, region=region_of(phone), day=int(now // DAY)
    )
    for key, _, _ in counters:
        if isinstance((yield Uncount(key)), Failed):
            return
