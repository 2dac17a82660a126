"""Reply-Message rendering within one attribute."""

from __future__ import annotations

from mfa_radius.core import prompts


def test_fills_placeholders() -> None:
    """{digits} and {attempts_left} are replaced."""
    text = prompts.render("{digits} digits, {attempts_left} left", digits=8, attempts_left=2)
    assert text == "8 digits, 2 left"


def test_cuts_to_253_octets() -> None:
    """A long prompt is cut to fit one Reply-Message (RFC 2865 §5)."""
    text = prompts.render("x" * 400, digits=6)
    assert len(text.encode()) == 253


def test_never_splits_a_multibyte_character() -> None:
    """Cutting stops on a UTF-8 character boundary."""
    text = prompts.render("é" * 200, digits=6)  # 2 octets each: 253 would split one
    assert text == "é" * 126
    assert len(text.encode()) == 252
