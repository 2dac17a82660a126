"""FileMessageSender: the lab's "phone", a text file that receives every SMS and call.

For labs, demos and development, where no SMS provider is wanted. Each message or call
appends one line::

    2026-11-25T09:30:01.123+00:00<TAB>sms<TAB>*********67<TAB>Your code is 123456

(UTC time, ``sms`` or ``call``, the number masked to its last two digits, the text). For a
call the text is what the call would speak, in the words of a real Twilio call
(:func:`~mfa_radius.adapters.twilio.twiml.code_speech`,
:func:`~mfa_radius.adapters.twilio.twiml.approve_speech`), built from the domain value: no
TwiML is built or parsed here. An approve call's token is not written: the file cannot answer
the call, and the token is the webhook's secret.

**The code is written to the file by design**: the file stands in for the user's phone, so
it holds what the phone would show. Never point a production proxy at this sender; protect
the file like a mailbox. The number, by contrast, is masked: the tester knows whose phone it
is, and the file may end up in a bug report.

Writes run in a worker thread (``asyncio.to_thread``) so a slow disk never stalls the event
loop; an ``OSError`` becomes :class:`~mfa_radius.errors.DeliveryFailed` (not permanent).
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, assert_never

import structlog

from mfa_radius import logs
from mfa_radius.adapters.twilio.twiml import approve_speech, code_speech
from mfa_radius.errors import DeliveryFailed, map_errors
from mfa_radius.ports import ApproveCall, CodeCall, CodeText, Delivery, Message

log = structlog.get_logger(__name__)

_BACKEND = "file"

Kind = Literal["sms", "call"]


class FileMessageSender:
    """Appends each SMS and call to a text file, one line each.

    Args:
        path: the file; created on first write, its directory must exist.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._numbers = itertools.count(1)

    def __repr__(self) -> str:
        return f"FileMessageSender({self._path!r})"

    async def send(self, message: Message) -> Delivery:
        """Append one line for ``message``: a text's body, or the words a call would speak.

        The sender of a text and the caller id of a call are not recorded: the lab's phone
        has no use for them.

        Args:
            message: the text message or call; its number is written masked.

        Returns:
            ``file-<n>``, n counting the lines this sender wrote.

        Raises:
            DeliveryFailed: the file cannot be written.
            ValueError: a :class:`CodeCall`'s code is not 1 to 16 ASCII digits (a programming
                error, refused as a real call would be).
        """
        match message:
            case CodeText():
                return await self._append("sms", message.to, message.body)
            case CodeCall():
                spoken = code_speech(message.code, organisation=message.organisation)
                return await self._append("call", message.to, " ".join(spoken))
            case ApproveCall():
                asked = approve_speech(organisation=message.organisation)
                return await self._append("call", message.to, " ".join(asked))
            case _:
                assert_never(message)

    async def close(self) -> None:
        """Nothing to release: the file is opened for each line."""

    async def _append(self, kind: Kind, to: str, text: str) -> Delivery:
        provider_id = f"file-{next(self._numbers)}"
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        line = "\t".join((stamp, kind, logs.mask_phone(to), " ".join(text.split()))) + "\n"
        with map_errors({OSError: DeliveryFailed}, _BACKEND):
            await asyncio.to_thread(self._write, line)
        log.info(
            "code_sent",
            backend=_BACKEND,
            channel=kind,
            phone_tail=logs.phone_tail(to),
            provider_id=provider_id,
        )
        return Delivery(provider_id=provider_id)

    def _write(self, line: str) -> None:
        # One write() of the whole line on a file opened for append: concurrent lines
        # from several threads do not interleave.
        with self._path.open("a", encoding="utf-8") as file:
            file.write(line)
