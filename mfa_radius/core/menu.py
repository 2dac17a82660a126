"""The factor menu at the prompt: "type 1 for a text message, 2 for a call".

A user who did not get the text can ask for a call at the same prompt; what they may type and
how the prompt offers it are defined here once, so the prompt and the parser always agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from mfa_radius.core.model import Factor

MENU_CHOICES: dict[str, Factor] = {
    "1": Factor.SMS,
    "sms": Factor.SMS,
    "text": Factor.SMS,
    "2": Factor.VOICE,
    "call": Factor.VOICE,
    "voice": Factor.VOICE,
}
"""What a user may type at the prompt to ask for another factor."""

_MENU_LINES = {Factor.SMS: "1 for a text message", Factor.VOICE: "2 for a call"}


def parse_choice(answer: str) -> Factor | None:
    """The factor a user asked for at the prompt, or None when the answer is a code."""
    return MENU_CHOICES.get(answer.strip().casefold())


def menu_suffix(usable: Sequence[Factor], current: Factor) -> str:
    """The prompt's tail offering the other phone factors (empty when there are none)."""
    others = [_MENU_LINES[f] for f in usable if f in _MENU_LINES and f is not current]
    return f" (or type {' or '.join(others)})" if others else ""
