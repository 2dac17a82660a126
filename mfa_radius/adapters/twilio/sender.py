"""TwilioMessageSender: text messages and phone calls through Twilio's REST API.

Implements :class:`mfa_radius.ports.MessageSender` with the twilio SDK (9.x) on its aiohttp
transport, ``AsyncTwilioHttpClient``. A :class:`~mfa_radius.core.messages.CodeText` goes to
the Messages API; a :class:`~mfa_radius.core.messages.CodeCall` or
:class:`~mfa_radius.core.messages.ApproveCall` goes to the Calls API with TwiML built here
(:mod:`mfa_radius.adapters.twilio.twiml`): the port carries domain values, and Twilio's markup
never leaves this package. An approve call's ``<Gather action>`` is the webhook's public URL
plus the call's token, the very URL the webhook rebuilds to check Twilio's signature, so the
sender is given ``webhook_url`` at construction.

The SDK's defaults are not trusted:

* **Deadline.** ``AsyncTwilioHttpClient`` stores a ``timeout`` but never uses it (its
  ``request`` passes only the per-call timeout to aiohttp, and the SDK's ``create_async``
  passes none, which aiohttp reads as "no limit"). Every call therefore runs under
  ``asyncio.timeout(timeout)``; cancellation closes the connection.
* **No retry.** A POST that timed out or got a 5xx may still have produced a message; sending
  it again would break "one login attempt = at most one SMS or call". The SDK wraps its
  session in ``aiohttp_retry.RetryClient`` only when ``max_retries`` is given, so we pass
  ``max_retries=None``; aiohttp itself retries a broken keep-alive connection only for
  idempotent methods, never for POST.
* **Credentials as a header.** ``AsyncTwilioHttpClient`` turns the SDK's ``(sid, token)``
  pair into ``aiohttp.BasicAuth``, deprecated since aiohttp 3.14 (a DeprecationWarning on
  every request); :class:`_HeaderAuthHttpClient` sends the same RFC 7617 ``Authorization``
  header itself. The SDK's request logger skips that header.
* **No environment.** The SDK reads ``TWILIO_EDGE``/``TWILIO_REGION`` from ``os.environ``
  unless given an environment mapping and would then rewrite the host name; the proxy's
  settings come from its configuration file only, so an explicit mapping is passed.

Errors become :class:`~mfa_radius.errors.DeliveryFailed`. A 4xx answer (other than 401, 403
and 429) means Twilio refused this number or message: ``permanent=True`` with Twilio's error
code. 401/403 mean the account or token is wrong, and an approve call without a configured
``webhook_url`` cannot be placed at all: configuration faults, not the user's, so
``permanent=False`` (the fail mode applies) and logged at error level. 429, 5xx, timeouts and
network errors are outages: ``permanent=False``.

Secrets: neither the auth token, the destination number, the text or TwiML (they hold the
code, or the approve token in the action URL) reaches a log line or an exception text.
Twilio's own error messages quote the number ("The 'To' number +1... is not a valid phone
number") and its exceptions carry the request URL, so an API error is re-raised ``from None``
with only the HTTP status and Twilio's error code copied over; transport errors keep their
cause (their texts name only host and port).

The ``twilio`` package has no type hints: its objects stay inside this module as ``Any``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal, assert_never

import aiohttp
import structlog
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from mfa_radius import logs
from mfa_radius.adapters.twilio.twiml import approve_action_url, approve_twiml, code_twiml
from mfa_radius.errors import DeliveryFailed
from mfa_radius.ports import ApproveCall, CodeCall, CodeText, Delivery, Message

log = structlog.get_logger(__name__)

_BACKEND = "twilio"
_MESSAGING_SERVICE_PREFIX = "MG"

Channel = Literal["sms", "call"]


class _HeaderAuthHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # twilio is untyped
    """``AsyncTwilioHttpClient`` that sends Basic credentials as a plain header.

    Everything else (session, logging, response wrapping) is the SDK's.
    """

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the SDK's signature; deadline: caller)
        allow_redirects: bool = False,
    ) -> Any:
        """Send one request; ``auth`` becomes an ``Authorization: Basic`` header (RFC 7617)."""
        if auth is not None:
            pair = f"{auth[0]}:{auth[1]}".encode()
            headers = {
                **(headers or {}),
                "Authorization": "Basic " + base64.b64encode(pair).decode(),
            }
        return await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


class TwilioMessageSender:
    """Sends codes by SMS and places calls through Twilio, at most once per request.

    The aiohttp session is opened on first use (aiohttp needs a running event loop) and
    released by :meth:`close`.

    Args:
        account_sid: the Twilio Account SID (``AC...``).
        auth_token: the account's auth token; never logged nor shown by ``repr``.
        timeout: seconds one API call may take, connection included.
        api_base_url: replaces ``https://api.twilio.com`` (tests point it at a local fake
            of the REST API); None for Twilio itself.
        webhook_url: the webhook's public base URL (``https://mfa.example.org/twilio``),
            where Twilio posts an approve call's keypress; a trailing slash is dropped so the
            action URL matches the one the webhook checks signatures against. Empty when no
            webhook is configured: approve calls then fail, codes still go out.

    Raises:
        ValueError: ``timeout`` is not positive.
    """

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        timeout: float = 5.0,
        api_base_url: str | None = None,
        webhook_url: str = "",
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._timeout = timeout
        self._api_base_url = api_base_url
        self._webhook_url = webhook_url.rstrip("/")
        self._http: Any = None
        self._client: Any = None

    def __repr__(self) -> str:
        return (
            f"TwilioMessageSender(account_sid={self._account_sid!r}, timeout={self._timeout!r}, "
            f"webhook_url={self._webhook_url!r})"
        )

    async def send(self, message: Message) -> Delivery:
        """Send a text message or place a call, once.

        Args:
            message: a :class:`CodeText` (Messages API; a sender starting with ``MG`` is a
                Messaging Service SID that lets Twilio pick the number), a :class:`CodeCall`
                or an :class:`ApproveCall` (Calls API, with the TwiML built here).

        Returns:
            The Message or Call SID.

        Raises:
            DeliveryFailed: Twilio refused the message, did not answer in time, or an approve
                call was asked for without a ``webhook_url``.
            ValueError: a :class:`CodeCall`'s code is not 1 to 16 ASCII digits, or an
                :class:`ApproveCall`'s ``gather_seconds`` is below 1 (programming errors).
        """
        match message:
            case CodeText():
                return await self._send_text(message)
            case CodeCall():
                twiml = code_twiml(
                    message.code, organisation=message.organisation, language=message.language
                )
                return await self._place_call(message.to, twiml, caller_id=message.caller_id)
            case ApproveCall():
                return await self._place_call(
                    message.to, self._approve_twiml(message), caller_id=message.caller_id
                )
            case _:
                assert_never(message)

    async def close(self) -> None:
        """Close the aiohttp session (idempotent)."""
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()

    def _approve_twiml(self, message: ApproveCall) -> str:
        """Build the approve call's TwiML, or refuse when no webhook could hear the answer."""
        if not self._webhook_url:
            # Placing the call anyway would ring the user for a keypress nobody receives.
            log.error(
                "delivery_failed",
                backend=_BACKEND,
                channel="call",
                phone_tail=logs.phone_tail(message.to),
                error="no_webhook_url",
            )
            raise DeliveryFailed(
                _BACKEND, "approve call needs the webhook's public URL (webhook_url is not set)"
            )
        return approve_twiml(
            action_url=approve_action_url(self._webhook_url, message.token),
            organisation=message.organisation,
            language=message.language,
            timeout_s=message.gather_seconds,
        )

    async def _send_text(self, message: CodeText) -> Delivery:
        """Post one text message (the body holds the code: never logged)."""
        client = self._ensure_client()
        sender = message.sender
        origin = (
            {"messaging_service_sid": sender}
            if sender.startswith(_MESSAGING_SERVICE_PREFIX)
            else {"from_": sender}
        )
        return await self._create(
            "sms",
            message.to,
            lambda: client.messages.create_async(to=message.to, body=message.body, **origin),
        )

    async def _place_call(self, to: str, twiml: str, *, caller_id: str) -> Delivery:
        """Post one call that plays ``twiml`` (it holds a code or token: never logged)."""
        client = self._ensure_client()
        return await self._create(
            "call", to, lambda: client.calls.create_async(to=to, from_=caller_id, twiml=twiml)
        )

    def _ensure_client(self) -> Any:
        """Return the SDK client, creating it and its aiohttp session on first use."""
        if self._client is None:
            # max_retries=None: no aiohttp_retry wrapper, so a POST goes out once.
            self._http = _HeaderAuthHttpClient(pool_connections=True, max_retries=None)
            client = Client(
                self._account_sid,
                self._auth_token,
                http_client=self._http,
                # Non-empty on purpose: an empty mapping makes the SDK fall back to os.environ.
                environment={"TWILIO_ACCOUNT_SID": self._account_sid},
            )
            if self._api_base_url is not None:
                # Every Messages/Calls URL is built from the Api domain's base_url.
                client.api.base_url = self._api_base_url.rstrip("/")
            self._client = client
        return self._client

    async def _create(
        self, channel: Channel, to: str, create: Callable[[], Awaitable[Any]]
    ) -> Delivery:
        """Run one create call under the deadline and translate its outcome."""
        tail = logs.phone_tail(to)
        try:
            async with asyncio.timeout(self._timeout):
                instance = await create()
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _refused(channel, tail, exc) from None
        except TimeoutError as exc:
            log.warning(
                "delivery_failed",
                backend=_BACKEND,
                channel=channel,
                phone_tail=tail,
                error="timeout",
                timeout=self._timeout,
            )
            raise DeliveryFailed(
                _BACKEND, f"no answer within {self._timeout:g} s", maybe_sent=True
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            error = type(exc).__name__
            log.warning(
                "delivery_failed", backend=_BACKEND, channel=channel, phone_tail=tail, error=error
            )
            raise DeliveryFailed(_BACKEND, f"connection failed: {error}") from exc
        except json.JSONDecodeError:
            # A 2xx whose body is not JSON: the message may have gone out, so not permanent.
            log.warning(
                "delivery_failed",
                backend=_BACKEND,
                channel=channel,
                phone_tail=tail,
                error="bad_response",
            )
            raise DeliveryFailed(_BACKEND, "unreadable answer", maybe_sent=True) from None
        sid = getattr(instance, "sid", None)
        if not isinstance(sid, str) or not sid:
            log.warning(
                "delivery_failed",
                backend=_BACKEND,
                channel=channel,
                phone_tail=tail,
                error="no_sid",
            )
            raise DeliveryFailed(_BACKEND, "answer without a SID", maybe_sent=True)
        log.info("code_sent", backend=_BACKEND, channel=channel, phone_tail=tail, provider_id=sid)
        return Delivery(provider_id=sid)


def _refused(
    channel: Channel, tail: str, exc: TwilioRestException | TwilioServiceException
) -> DeliveryFailed:
    """Translate an API error answer, copying only its HTTP status and Twilio error code.

    The log key is ``error_code``, not ``code``: ``code`` is on the redaction denylist
    (it names one-time codes elsewhere) and would be dropped.
    """
    status = _as_int(exc.status)
    error_code = _as_int(exc.code)
    fields = {
        "backend": _BACKEND,
        "channel": channel,
        "phone_tail": tail,
        "status": status,
        "error_code": error_code,
    }
    suffix = f"HTTP {status}" + (f", error {error_code}" if error_code is not None else "")
    if status in (401, 403):
        log.error("delivery_failed", error="unauthorized", **fields)
        return DeliveryFailed(
            _BACKEND, f"account or auth token refused ({suffix})", code=error_code
        )
    if status is not None and 400 <= status < 500 and status != 429:
        log.warning("delivery_failed", error="refused", **fields)
        return DeliveryFailed(_BACKEND, f"refused ({suffix})", permanent=True, code=error_code)
    log.warning("delivery_failed", error="unavailable", **fields)
    return DeliveryFailed(_BACKEND, f"unavailable ({suffix})", code=error_code)


def _as_int(value: object) -> int | None:
    """Return an int from the SDK's loosely typed status/code fields, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
