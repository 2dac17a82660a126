"""Drive the pure login engine (or any effect generator) with scripted effect results.

A script is an ordered list of ``(expected, result)`` pairs: ``expected`` is the exact effect
the engine must ask for next (compared with ``==``) or, where its fields do not matter, the
effect's type; ``result`` is what the effect answers (an ``effects.Failed`` for a failed
backend). An effect the script does not expect fails the test at once, naming the step; so
does a script left unused when the decision comes out. No I/O, no clock, no event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import pytest

from mfa_radius.core.effects import Count, Effect, MarkOnce, Steps, Uncount
from mfa_radius.core.limits import DAY, SendLimits
from mfa_radius.core.login import Decision, Login, Step

T = TypeVar("T")

Expected: TypeAlias = Effect[Any] | type[Effect[Any]]
"""An exact effect, or an effect type when its fields do not matter."""

Answer: TypeAlias = tuple[Expected, object]
"""One step of a script: the effect expected next and its result."""

Script: TypeAlias = Sequence[Answer]
"""What the engine must ask for, in order, and what each effect answers."""


def _check(index: int, expected: Expected, effect: Effect[Any]) -> None:
    """Fail the test unless ``effect`` is what step ``index`` of the script expects."""
    if isinstance(expected, type):
        if type(effect) is not expected:
            pytest.fail(f"step {index}: expected a {expected.__name__}, got {effect!r}")
    elif effect != expected:
        pytest.fail(f"step {index}: expected {expected!r}, got {effect!r}")


def _feed(
    first: Step, answers: Script, send: Callable[[object], Step]
) -> tuple[Step, list[Effect[Any]]]:
    """Answer effects from the script until a decision or the end of the script."""
    step = first
    seen: list[Effect[Any]] = []
    for index, (expected, result) in enumerate(answers):
        if isinstance(step, Decision):
            pytest.fail(f"decided {step.outcome!r} with {len(answers) - index} answers unused")
        _check(index, expected, step)
        seen.append(step)
        step = send(result)
    return step, seen


def run(login: Login, answers: Script) -> tuple[Decision, list[Effect[Any]]]:
    """Run ``login`` to its decision on scripted results.

    Returns:
        The decision and every effect the engine asked for, in order.
    """
    step, seen = _feed(login.start(), answers, login.send)
    if not isinstance(step, Decision):
        pytest.fail(f"unexpected effect after {len(seen)} answers: {step!r}")
    return step, seen


def run_then_expire(login: Login, answers: Script) -> tuple[Decision, Effect[Any]]:
    """Answer the script, then let the response window run out on the next pending effect.

    Returns:
        What ``Login.expire`` decides, and the effect that was pending.
    """
    step, seen = _feed(login.start(), answers, login.send)
    if isinstance(step, Decision):
        pytest.fail(f"decided {step.outcome!r} after {len(seen)} answers: nothing to expire")
    return login.expire(), step


def drive(steps: Steps[T], answers: Script) -> tuple[T, list[Effect[Any]]]:
    """Run one effect generator (a factor's start/check, a limit step) on scripted results.

    Exceptions the generator raises (``BackendFailure``) propagate to the test.

    Returns:
        The generator's return value and every effect it asked for, in order.
    """
    seen: list[Effect[Any]] = []
    index = 0
    reply: object = None
    while True:
        try:
            effect = steps.send(reply)
        except StopIteration as stop:
            if index < len(answers):
                pytest.fail(f"returned {stop.value!r} with {len(answers) - index} answers unused")
            value: T = stop.value
            return value, seen
        if index >= len(answers):
            pytest.fail(f"unexpected effect after {index} answers: {effect!r}")
        expected, reply = answers[index]
        _check(index, expected, effect)
        seen.append(effect)
        index += 1


__all__ = [
    "Answer",
    "Expected",
    "Script",
    "drive",
    "limits_given_back",
    "limits_pass",
    "run",
    "run_then_expire",
]


def limits_pass(
    username: str, phone: str, now: float, region: str, limits: SendLimits | None = None
) -> list[Answer]:
    """Every send-limit step for one text or call, each answering "within limits"."""
    cfg = limits or SendLimits()
    return [
        (MarkOnce(f"send:cooldown:{username}", cfg.cooldown), True),
        (Count(f"send:user:{username}", cfg.per_user.window), 1),
        (Count(f"send:number:{phone}", cfg.per_number.window), 1),
        (Count(f"send:region:{region}", cfg.per_region.window), 1),
        (Count(f"send:day:{int(now // DAY)}", DAY), 1),
    ]


def limits_given_back(
    username: str, phone: str, now: float, region: str, left: int = 0
) -> list[Answer]:
    """Every counter of one failed text or call taken back (cool-down mark excluded).

    Each ``Uncount`` answers ``left``, the counter's value after it.
    """
    return [
        (Uncount(f"send:user:{username}"), left),
        (Uncount(f"send:number:{phone}"), left),
        (Uncount(f"send:region:{region}"), left),
        (Uncount(f"send:day:{int(now // DAY)}"), left),
    ]
