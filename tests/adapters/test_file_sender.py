"""FileCodeSender: the lab's phone is a file with one line per message or call."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
import structlog

from mfa_radius.adapters.file_sender import FileCodeSender, spoken_text
from mfa_radius.errors import DeliveryFailed

PHONE = "+15005550987"
SENDER = "+15005550006"
BODY = "Your sign-in code is 483920"
TWIML = (
    "<Response><Gather numDigits='1'><Say>Your code is</Say>"
    "<Say> 4 8 3 9 2 0 </Say></Gather><Pause length='1'/></Response>"
)


def _lines(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


class TestFileCodeSender:
    async def test_sms_line_has_time_kind_masked_number_and_body(self, tmp_path: Path) -> None:
        """An SMS appends one line: UTC ISO time, "sms", the masked number and the body."""
        path = tmp_path / "phone.txt"
        delivery = await FileCodeSender(path).send_sms(PHONE, BODY, sender=SENDER)

        [[stamp, kind, number, text]] = _lines(path)
        assert datetime.fromisoformat(stamp).utcoffset() is not None
        assert (kind, number, text) == ("sms", "*********87", BODY)
        assert PHONE not in path.read_text(encoding="utf-8")
        assert delivery.provider_id == "file-1"

    async def test_call_line_has_the_spoken_text(self, tmp_path: Path) -> None:
        """A call appends the words of its <Say> elements, not the TwiML markup."""
        path = tmp_path / "phone.txt"
        await FileCodeSender(path).call(PHONE, TWIML, caller_id=SENDER)

        [[_, kind, number, text]] = _lines(path)
        assert (kind, number, text) == ("call", "*********87", "Your code is 4 8 3 9 2 0")

    async def test_appends_and_numbers_each_delivery(self, tmp_path: Path) -> None:
        """Every message adds a line and gets the next file-<n> id, concurrent ones too."""
        path = tmp_path / "phone.txt"
        path.write_text("earlier line\n", encoding="utf-8")
        sender = FileCodeSender(path)

        deliveries = await asyncio.gather(
            *(sender.send_sms(PHONE, f"code {n}", sender=SENDER) for n in range(5))
        )

        assert sorted(d.provider_id for d in deliveries) == [f"file-{n}" for n in range(1, 6)]
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "earlier line"
        assert sorted(line.split("\t")[3] for line in lines[1:]) == [f"code {n}" for n in range(5)]

    async def test_multiline_text_stays_on_one_line(self, tmp_path: Path) -> None:
        """Line breaks in a message are folded so that one delivery is one line."""
        path = tmp_path / "phone.txt"
        await FileCodeSender(path).send_sms(PHONE, "Code:\n483920\r\nbye", sender=SENDER)

        [[*_, text]] = _lines(path)
        assert text == "Code: 483920 bye"

    async def test_unwritable_file_raises_delivery_failed(self, tmp_path: Path) -> None:
        """A file in a missing directory gives a transient DeliveryFailed from the file backend."""
        sender = FileCodeSender(tmp_path / "missing" / "phone.txt")
        with pytest.raises(DeliveryFailed) as caught:
            await sender.send_sms(PHONE, BODY, sender=SENDER)

        assert caught.value.backend == "file"
        assert not caught.value.permanent
        assert PHONE not in str(caught.value)

    async def test_logs_phone_tail_not_number_or_text(self, tmp_path: Path) -> None:
        """code_sent carries the last two digits and the id; the code stays in the file."""
        with structlog.testing.capture_logs() as entries:
            await FileCodeSender(tmp_path / "phone.txt").send_sms(PHONE, BODY, sender=SENDER)

        [entry] = entries
        assert entry["event"] == "code_sent"
        assert entry["phone_tail"] == "87"
        assert PHONE not in repr(entries)
        assert "483920" not in repr(entries)


class TestSpokenText:
    @pytest.mark.parametrize(
        ("twiml", "spoken"),
        [
            ("<Response><Say>Hello</Say></Response>", "Hello"),
            ("<Response><Say voice='alice'>A</Say><Say>B</Say></Response>", "A B"),
            ("<Response><Play>x.mp3</Play></Response>", "<Response><Play>x.mp3</Play></Response>"),
            ("not xml <Say>", "not xml <Say>"),
        ],
        ids=["one-say", "two-says", "no-say", "unparsable"],
    )
    def test_extracts_say_text(self, twiml: str, spoken: str) -> None:
        """The words of <Say> elements in order; anything else comes back unchanged."""
        assert spoken_text(twiml) == spoken
