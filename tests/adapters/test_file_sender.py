"""FileMessageSender: the lab's phone is a file with one line per message or call."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
import structlog

from mfa_radius.adapters.file_sender import FileMessageSender
from mfa_radius.errors import DeliveryFailed
from mfa_radius.ports import ApproveCall, CodeCall, CodeText, Message

PHONE = "+15005550987"
SENDER = "+15005550006"
BODY = "Your sign-in code is 483920"
TOKEN = "Zm9vYmFyYmF6cXV4MTIzNA"
TEXT = CodeText(to=PHONE, body=BODY, sender=SENDER)
VOICE = CodeCall(
    to=PHONE, code="483920", organisation="Example", language="en-US", caller_id=SENDER
)
APPROVE = ApproveCall(
    to=PHONE,
    token=TOKEN,
    organisation="Example",
    language="en-US",
    caller_id=SENDER,
    gather_seconds=10,
)


def _lines(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def _text(body: str) -> CodeText:
    return CodeText(to=PHONE, body=body, sender=SENDER)


class TestFileMessageSender:
    async def test_sms_line_has_time_kind_masked_number_and_body(self, tmp_path: Path) -> None:
        """An SMS appends one line: UTC ISO time, "sms", the masked number and the body."""
        path = tmp_path / "phone.txt"
        delivery = await FileMessageSender(path).send(TEXT)

        [[stamp, kind, number, text]] = _lines(path)
        assert datetime.fromisoformat(stamp).utcoffset() is not None
        assert (kind, number, text) == ("sms", "*********87", BODY)
        assert PHONE not in path.read_text(encoding="utf-8")
        assert delivery.provider_id == "file-1"

    async def test_voice_call_line_has_the_spoken_words(self, tmp_path: Path) -> None:
        """A voice code appends the words the call speaks: the code digit by digit, twice."""
        path = tmp_path / "phone.txt"
        await FileMessageSender(path).send(VOICE)

        [[_, kind, number, text]] = _lines(path)
        assert (kind, number) == ("call", "*********87")
        assert text == (
            "This is Example. Your sign-in code is: 4, 8, 3, 9, 2, 0. "
            "Again: 4, 8, 3, 9, 2, 0. Goodbye."
        )

    async def test_approve_call_line_has_the_question_not_the_token(self, tmp_path: Path) -> None:
        """An approve call appends its question and goodbye; the webhook token stays out."""
        path = tmp_path / "phone.txt"
        await FileMessageSender(path).send(APPROVE)

        [[_, kind, number, text]] = _lines(path)
        assert (kind, number) == ("call", "*********87")
        assert text == (
            "This is Example. Press 1 to approve the sign-in. "
            "Press 9 to report that you did not try to sign in. No key pressed. Goodbye."
        )
        assert TOKEN not in path.read_text(encoding="utf-8")

    async def test_appends_and_numbers_each_delivery(self, tmp_path: Path) -> None:
        """Every message adds a line and gets the next file-<n> id, concurrent ones too."""
        path = tmp_path / "phone.txt"
        path.write_text("earlier line\n", encoding="utf-8")
        sender = FileMessageSender(path)

        deliveries = await asyncio.gather(*(sender.send(_text(f"code {n}")) for n in range(5)))

        assert sorted(d.provider_id for d in deliveries) == [f"file-{n}" for n in range(1, 6)]
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "earlier line"
        assert sorted(line.split("\t")[3] for line in lines[1:]) == [f"code {n}" for n in range(5)]

    async def test_multiline_text_stays_on_one_line(self, tmp_path: Path) -> None:
        """Line breaks in a message are folded so that one delivery is one line."""
        path = tmp_path / "phone.txt"
        await FileMessageSender(path).send(_text("Code:\n483920\r\nbye"))

        [[*_, text]] = _lines(path)
        assert text == "Code: 483920 bye"

    async def test_unwritable_file_raises_delivery_failed(self, tmp_path: Path) -> None:
        """A file in a missing directory gives a transient DeliveryFailed from the file backend."""
        sender = FileMessageSender(tmp_path / "missing" / "phone.txt")
        with pytest.raises(DeliveryFailed) as caught:
            await sender.send(TEXT)

        assert caught.value.backend == "file"
        assert not caught.value.permanent
        assert PHONE not in str(caught.value)

    @pytest.mark.parametrize("message", [TEXT, VOICE, APPROVE], ids=["text", "voice", "approve"])
    async def test_logs_phone_tail_not_number_or_text(
        self, tmp_path: Path, message: Message
    ) -> None:
        """code_sent carries the last two digits and the id; code and token stay in the file."""
        with structlog.testing.capture_logs() as entries:
            await FileMessageSender(tmp_path / "phone.txt").send(message)

        [entry] = entries
        assert entry["event"] == "code_sent"
        assert entry["phone_tail"] == "87"
        assert PHONE not in repr(entries)
        assert "483920" not in repr(entries)
        assert TOKEN not in repr(entries)

    async def test_rejects_voice_code_that_is_not_digits(self, tmp_path: Path) -> None:
        """A code a call could not read out is refused as the Twilio sender refuses it."""
        path = tmp_path / "phone.txt"
        call = CodeCall(
            to=PHONE, code="12a4", organisation="Example", language="en-US", caller_id=SENDER
        )
        with pytest.raises(ValueError, match="digits"):
            await FileMessageSender(path).send(call)

        assert not path.exists()
