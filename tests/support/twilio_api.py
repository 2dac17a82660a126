"""A local stand-in for Twilio's REST API (Messages and Calls), for the real twilio SDK.

An aiohttp application on 127.0.0.1 speaking the shapes of the 2010-04-01 API that
:class:`~mfa_radius.adapters.twilio.sender.TwilioMessageSender` uses:

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form: ``To``, ``From`` or
  ``MessagingServiceSid``, ``Body``)
* ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (form: ``To``, ``From``, ``Twiml``)

HTTP Basic auth must carry the account SID and auth token it was built with (401 with
Twilio's error 20003 otherwise). Every request is recorded, authorised or not. A test picks
the answer with :attr:`FakeTwilioApi.reply`: created (201), an invalid number (400, error
21211), rate limited (429), unavailable (503), or :attr:`Reply.HANG`, which never answers
until the fake stops.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from enum import Enum
from types import TracebackType
from typing import Literal

from aiohttp import web

from tests.support.ports import LOOPBACK

API_VERSION = "2010-04-01"

Resource = Literal["Messages", "Calls"]


class Reply(Enum):
    """What the fake answers to an authorised, well-formed request."""

    CREATED = 201  #: the resource, status "queued"
    INVALID_NUMBER = 400  #: Twilio error 21211, "The 'To' number ... is not a valid phone number."
    RATE_LIMITED = 429  #: Twilio error 20429
    UNAVAILABLE = 503  #: Twilio error 20503
    HANG = 0  #: no answer at all until the fake stops


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it.

    Attributes:
        resource: ``Messages`` or ``Calls``.
        account_sid: the AccountSid in the URL path.
        authorized: whether Basic auth matched the account SID and auth token.
        form: every form field as sent.
    """

    resource: Resource
    account_sid: str
    authorized: bool
    form: Mapping[str, str]

    @property
    def to(self) -> str | None:
        """The ``To`` field."""
        return self.form.get("To")

    @property
    def from_(self) -> str | None:
        """The ``From`` field."""
        return self.form.get("From")

    @property
    def body(self) -> str | None:
        """The ``Body`` field (messages)."""
        return self.form.get("Body")

    @property
    def twiml(self) -> str | None:
        """The ``Twiml`` field (calls)."""
        return self.form.get("Twiml")

    @property
    def messaging_service_sid(self) -> str | None:
        """The ``MessagingServiceSid`` field (messages)."""
        return self.form.get("MessagingServiceSid")


def _error(status: int, code: int, message: str) -> web.Response:
    """An error in Twilio's legacy JSON shape (the one the 2010-04-01 API returns)."""
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


class FakeTwilioApi:
    """The fake API server; use as ``async with FakeTwilioApi(...) as api:``.

    Args:
        account_sid: the only account it knows.
        auth_token: the token Basic auth must carry.
    """

    def __init__(self, *, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.reply = Reply.CREATED
        self.requests: list[RecordedRequest] = []
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        """Where the API listens, in place of ``https://api.twilio.com``."""
        if self._runner is None:
            raise RuntimeError("the fake API is not running")
        return f"http://{LOOPBACK}:{self._port}"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        route = f"/{API_VERSION}/Accounts/{{account_sid}}/{{resource:Messages|Calls}}.json"
        app.router.add_post(route, self._handle)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((LOOPBACK, 0))
            self._port = sock.getsockname()[1]
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Release hanging requests and close the server."""
        self._release.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeTwilioApi:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _authorized(self, request: web.Request, account_sid: str) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (
            secrets.compare_digest(user, self.account_sid)
            and secrets.compare_digest(password, self._auth_token)
            and account_sid == self.account_sid
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        account_sid = request.match_info["account_sid"]
        resource: Resource = "Messages" if request.match_info["resource"] == "Messages" else "Calls"
        form = {key: str(value) for key, value in (await request.post()).items()}
        authorized = self._authorized(request, account_sid)
        self.requests.append(RecordedRequest(resource, account_sid, authorized, form))
        if not authorized:
            return _error(401, 20003, "Authenticate")
        if "To" not in form:
            return _error(400, 21604, "A 'To' phone number is required.")
        if resource == "Messages" and not ({"From", "MessagingServiceSid"} & form.keys()):
            return _error(400, 21603, "A 'From' phone number is required.")
        match self.reply:
            case Reply.HANG:
                await self._release.wait()
                return _error(503, 20503, "Service unavailable")
            case Reply.INVALID_NUMBER:
                # Like Twilio, the message quotes the number: the adapter must not copy it.
                return _error(
                    400, 21211, f"The 'To' number {form['To']} is not a valid phone number."
                )
            case Reply.RATE_LIMITED:
                return _error(429, 20429, "Too Many Requests")
            case Reply.UNAVAILABLE:
                return _error(503, 20503, "Service unavailable")
            case Reply.CREATED:
                return web.json_response(self._created(resource, form), status=201)

    def _created(self, resource: Resource, form: Mapping[str, str]) -> dict[str, object]:
        prefix = "SM" if resource == "Messages" else "CA"
        sid = prefix + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        common: dict[str, object] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": form["To"],
            "from": form.get("From"),
            "status": "queued",
            "direction": "outbound-api",
            "api_version": API_VERSION,
            "date_created": now,
            "date_updated": now,
            "price": None,
            "price_unit": "USD",
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/{resource}/{sid}.json",
        }
        if resource == "Messages":
            return common | {
                "body": form.get("Body", ""),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "num_segments": "1",
                "num_media": "0",
                "date_sent": None,
                "error_code": None,
                "error_message": None,
            }
        return common | {
            "parent_call_sid": None,
            "start_time": None,
            "end_time": None,
            "duration": None,
            "answered_by": None,
            "caller_name": None,
        }
