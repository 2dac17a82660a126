"""The TwiML documents of the Twilio adapter: known answers, escaping and input checks.

Documents are parsed back with ElementTree (our own output, not untrusted input) except for
the known answers, which pin the exact bytes Twilio receives.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from mfa_radius.adapters.twilio.twiml import (
    approve_action_url,
    approve_speech,
    approve_twiml,
    code_speech,
    code_twiml,
    reply_twiml,
)
from mfa_radius.core.call_result import CallResult


def parse_twiml(document: str) -> ET.Element:
    """Parse TwiML produced by the code under test (our own output, not untrusted input)."""
    return ET.fromstring(document)  # noqa: S314 - our own TwiML, see above


class TestApproveActionUrl:
    def test_appends_route_and_token(self) -> None:
        """The action URL is the public URL, the approve route and the token as query."""
        assert approve_action_url("https://h/twilio", "abc") == "https://h/twilio/approve?t=abc"


class TestApproveTwiml:
    def test_renders_known_answer(self) -> None:
        """The document matches the agreed TwiML exactly."""
        twiml = approve_twiml(
            action_url="https://h/twilio/approve?t=abc",
            organisation="Example",
            language="en-GB",
            timeout_s=8,
        )
        assert twiml == (
            '<?xml version="1.0" encoding="UTF-8"?><Response>'
            '<Gather numDigits="1" action="https://h/twilio/approve?t=abc" method="POST" '
            'timeout="8"><Say language="en-GB">This is Example. Press 1 to approve the sign-in. '
            "Press 9 to report that you did not try to sign in.</Say></Gather>"
            '<Say language="en-GB">No key pressed. Goodbye.</Say></Response>'
        )

    def test_escapes_markup_in_values(self) -> None:
        """Organisation and URL with XML special characters survive a parse unchanged."""
        url = 'https://h/approve?t=abc&x="1"'
        twiml = approve_twiml(
            action_url=url, organisation="A&B <Ltd>", language="en-GB", timeout_s=8
        )
        gather = parse_twiml(twiml).find("Gather")
        assert gather is not None
        assert gather.get("action") == url
        assert "A&B <Ltd>" in (gather.findtext("Say") or "")

    def test_rejects_timeout_below_one(self) -> None:
        """A zero timeout would hang up before the callee could press a key."""
        with pytest.raises(ValueError, match="timeout_s"):
            approve_twiml(action_url="https://h/a", organisation="E", language="en", timeout_s=0)


class TestCodeTwiml:
    def test_reads_code_digit_by_digit_twice(self) -> None:
        """The code is spoken as separate digits, twice."""
        twiml = code_twiml("123456", organisation="Example", language="en-US")
        spoken = [say.text for say in parse_twiml(twiml).iter("Say")]
        assert spoken.count("1, 2, 3, 4, 5, 6.") == 2

    def test_pauses_between_parts(self) -> None:
        """Pauses separate the introduction, the two readings and the goodbye."""
        twiml = code_twiml("42", organisation="Example", language="en-US")
        tags = [element.tag for element in parse_twiml(twiml)]
        assert tags == ["Say", "Pause", "Say", "Pause", "Say", "Say", "Pause", "Say"]

    def test_uses_language_for_every_say(self) -> None:
        """Every spoken part uses the configured language."""
        twiml = code_twiml("42", organisation="Example", language="de-DE")
        assert {say.get("language") for say in parse_twiml(twiml).iter("Say")} == {"de-DE"}

    @pytest.mark.parametrize(
        "code",
        ["", "12a4", "\uff11\uff12\uff13", "1" * 17],
        ids=["empty", "letter", "fullwidth", "long"],
    )
    def test_rejects_code_not_digits(self, code: str) -> None:
        """Only 1 to 16 ASCII digits are read out."""
        with pytest.raises(ValueError, match="digits"):
            code_twiml(code, organisation="Example", language="en-US")


class TestSpeech:
    def test_code_speech_is_what_the_code_call_says(self) -> None:
        """The words the file sender writes are the <Say> texts of the real call, in order."""
        twiml = code_twiml("483920", organisation="Example", language="en-US")
        says = [say.text for say in parse_twiml(twiml).iter("Say")]
        assert says == list(code_speech("483920", organisation="Example"))

    def test_approve_speech_is_what_the_approve_call_says(self) -> None:
        """The approve call's question and goodbye are its <Say> texts, in order."""
        twiml = approve_twiml(
            action_url="https://h/a", organisation="Example", language="en-US", timeout_s=8
        )
        says = [say.text for say in parse_twiml(twiml).iter("Say")]
        assert says == list(approve_speech(organisation="Example"))

    def test_code_speech_rejects_code_not_digits(self) -> None:
        """The words are refused for a code a call could not read out."""
        with pytest.raises(ValueError, match="digits"):
            code_speech("12a4", organisation="Example")


class TestReplyTwiml:
    @pytest.mark.parametrize(
        ("result", "said"),
        [
            (CallResult.APPROVE, "Thank you. You may hang up."),
            (CallResult.DENY, "Thank you. You may hang up."),
            (CallResult.FRAUD, "Thank you. The sign-in attempt has been reported. Goodbye."),
        ],
        ids=["approve", "deny", "fraud"],
    )
    def test_renders_known_answer(self, result: CallResult, said: str) -> None:
        """After a key the callee is thanked; after a 9 they hear the attempt was reported."""
        assert reply_twiml(result) == (
            f'<?xml version="1.0" encoding="UTF-8"?><Response><Say>{said}</Say></Response>'
        )
