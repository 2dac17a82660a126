"""FileCodeSender: the lab's "phone", a text file that receives every SMS and call.

For labs, demos and development, where no SMS provider is wanted. Each message or call
appends one line::

    2026-11-25T09:30:01.123+00:00<TAB>sms<TAB>*********67<TAB>Your code is 123456

(UTC time, ``sms`` or ``call``, the number masked to its last two digits, the text). For a
call the text is what would be spoken: the ``<Say>`` elements of its TwiML.

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
from xml.etree import ElementTree

import structlog

from mfa_radius import logs
from mfa_radius.errors import DeliveryFailed, map_errors
from mfa_radius.ports import Delivery

log = structlog.get_logger(__name__)

_BACKEND = "file"


class FileCodeSender:
    """Appends each SMS and call to a text file, one line each.

    Args:
        path: the file; created on first write, its directory must exist.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._numbers = itertools.count(1)

    def __repr__(self) -> str:
        return f"FileCodeSender({self._path!r})"

    async def send_sms(self, to: str, body: str, *, sender: str) -> Delivery:
        """Append the message ``body`` for ``to`` (``sender`` is not recorded).

        Args:
            to: destination number (written masked).
            body: the text, written as is (one line).
            sender: ignored; kept for the :class:`~mfa_radius.ports.CodeSender` signature.

        Returns:
            ``file-<n>``, n counting the lines this sender wrote.

        Raises:
            DeliveryFailed: the file cannot be written.
        """
        return await self._append("sms", to, body)

    async def call(self, to: str, twiml: str, *, caller_id: str) -> Delivery:
        """Append the words the call to ``to`` would speak.

        Args:
            to: destination number (written masked).
            twiml: the call's TwiML; the text of its ``<Say>`` elements is written.
            caller_id: ignored; kept for the :class:`~mfa_radius.ports.CodeSender` signature.

        Returns:
            ``file-<n>``, n counting the lines this sender wrote.

        Raises:
            DeliveryFailed: the file cannot be written.
        """
        return await self._append("call", to, spoken_text(twiml))

    async def close(self) -> None:
        """Nothing to release: the file is opened for each line."""

    async def _append(self, kind: str, to: str, text: str) -> Delivery:
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


def spoken_text(twiml: str) -> str:
    """Return the words of the ``<Say>`` elements of ``twiml``, in order.

    The TwiML is built by this proxy, never received from outside, so the standard library
    parser is safe here. Unparsable TwiML, or TwiML without ``<Say>``, is returned as is so
    the tester still sees what was sent.
    """
    try:
        root = ElementTree.fromstring(twiml)  # noqa: S314 (our own TwiML, not remote input)
    except ElementTree.ParseError:
        return twiml
    said = [" ".join("".join(say.itertext()).split()) for say in root.iter("Say")]
    return " ".join(part for part in said if part) or twiml
