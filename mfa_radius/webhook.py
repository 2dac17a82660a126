"""The HTTP listener that receives Twilio's answer to an approve phone call.

Responsibility: when the proxy calls a user to approve a sign-in, the call's TwiML
(``adapters.twilio.twiml.approve_twiml``, built by the Twilio sender) asks Twilio to POST the
pressed key to ``{public_url}/approve?t={token}``. Twilio reaches *whichever* node the reverse
proxy picks, while another node holds the Access-Request; this module checks that the request
really comes from Twilio and hands the answer to every node through
:meth:`ResultBus.publish_result`, where the waiting node's :meth:`ResultBus.wait_result` picks
it up at once. The URL and the reply document come from the same TwiML module as the call, so
the URL checked here is the one Twilio was given; what a key means comes from
``core.call_result``.

Rules this module keeps:

* **Twilio's signature or nothing.** ``X-Twilio-Signature`` is checked with twilio's
  ``RequestValidator`` over the *public* URL the proxy gave Twilio, rebuilt from the configured
  ``public_url`` and the token (the request's own Host and scheme are the reverse proxy's, not
  trusted). A missing or wrong signature gets 403 and records nothing.
* **Cheap checks before any store call.** The token's shape is checked first (400), bodies are
  capped at :data:`MAX_BODY_BYTES` (413), so junk traffic never reaches Redis.
* **One answer per call.** The first signed answer for a token is recorded (:meth:`Marks.mark_once`
  on ``hook:{token}``); a replay gets the same polite TwiML and changes nothing.
* **Secrets stay out of logs and reprs**: the auth token, the signature and the raw call token
  are never logged; a token appears only as ``token_id`` (first 8 hex of its SHA-256). The
  access log is off because it would print the query string.

It must not decide what an answer means for the login (the approve factor,
``core/factors/approve.py``, does), place calls, or read configuration.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from twilio.request_validator import RequestValidator

from mfa_radius.adapters.twilio.twiml import approve_action_url, reply_twiml
from mfa_radius.core.call_result import result_for_digits
from mfa_radius.errors import BackendError
from mfa_radius.ports import Marks, ResultBus

log = structlog.get_logger("mfa_radius.webhook")

TOKEN_BYTES: Final = 16
"""Random bytes in a call token (``secrets.token_urlsafe(TOKEN_BYTES)``): 22 URL-safe chars."""

MAX_BODY_BYTES: Final = 16 * 1024
"""Largest request body accepted; Twilio's Gather callback is well under 2 KiB."""

_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{22}")
"""Shape of ``secrets.token_urlsafe(16)``: anything else was not issued by the proxy."""

_SIGNATURE_HEADER: Final = "X-Twilio-Signature"


def token_id(token: str) -> str:
    """Return the log-safe id of a call token: the first 8 hex digits of its SHA-256.

    Args:
        token: the call token.

    Returns:
        Eight hex digits.
    """
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def _twiml_response(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/xml", charset="utf-8")


class WebhookServer:
    """The aiohttp listener for Twilio's approve-call callbacks, behind a reverse proxy.

    Routes: ``POST {path of public_url}/approve?t=<token>`` (Twilio's form fields) and
    ``GET /healthz`` (200 ``ok``, for the reverse proxy's health check).

    Args:
        listen_host: address to bind (loopback when the reverse proxy runs on the host).
        listen_port: TCP port to bind; 0 picks a free one (see :attr:`port`).
        public_url: the URL Twilio reaches this listener at, as the reverse proxy exposes it
            (``https://mfa.example.org/twilio``); signatures are checked against it.
        auth_token: the Twilio auth token that signs callbacks (never logged or shown).
        results: where results are published for the node that waits for them.
        marks: where the first answer per token is marked, so that a replay changes nothing
            (the same store as ``results`` in practice: one mark and one result per call).
        result_ttl: seconds a result (and the replay mark) is kept.

    Raises:
        ValueError: ``public_url`` is not an absolute http(s) URL without query or fragment,
            ``auth_token`` is empty or ``result_ttl`` is not positive.
    """

    def __init__(
        self,
        *,
        listen_host: str,
        listen_port: int,
        public_url: str,
        auth_token: str,
        results: ResultBus,
        marks: Marks,
        result_ttl: float = 120.0,
    ) -> None:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("public_url must be an absolute http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError("public_url must not have a query or fragment")
        if not auth_token:
            raise ValueError("auth_token must not be empty")
        if not result_ttl > 0:
            raise ValueError("result_ttl must be positive")
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._public_url = public_url.rstrip("/")
        self._validator = RequestValidator(auth_token)
        self._results = results
        self._marks = marks
        self._result_ttl = result_ttl
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(parts.path.rstrip("/") + "/approve", self._approve)
        app.router.add_get("/healthz", self._healthz)
        # No access log: its default format prints the query string, which holds the token.
        # A short shutdown grace: Twilio's callbacks are small and answered in milliseconds.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        self._site: web.TCPSite | None = None

    def __repr__(self) -> str:
        return (
            f"WebhookServer(listen={self._listen_host}:{self._listen_port}, "
            f"public_url={self._public_url!r})"
        )

    def action_url(self, token: str) -> str:
        """Return the URL to put in an approve call's ``<Gather action>`` for ``token``.

        The webhook rebuilds exactly this URL to check Twilio's signature.

        Args:
            token: a call token from ``secrets.token_urlsafe(TOKEN_BYTES)``.

        Returns:
            ``{public_url}/approve?t={token}``.

        Raises:
            ValueError: the token does not have the shape of a proxy-issued token.
        """
        if _TOKEN_RE.fullmatch(token) is None:
            raise ValueError("token must come from secrets.token_urlsafe(TOKEN_BYTES)")
        return approve_action_url(self._public_url, token)

    @property
    def port(self) -> int:
        """The bound TCP port (useful after binding port 0).

        Raises:
            RuntimeError: the server is not started.
        """
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                port: int = address[1]
                return port
        raise RuntimeError("webhook server is not started")

    async def start(self) -> None:
        """Bind the socket and start serving.

        Raises:
            OSError: the address cannot be bound.
        """
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._listen_host, self._listen_port)
        await self._site.start()
        log.info("webhook_started", listen=f"{self._listen_host}:{self.port}")

    async def close(self) -> None:
        """Stop serving and release the socket (in-flight callbacks get a short grace)."""
        await self._runner.cleanup()
        self._site = None

    async def _healthz(self, request: web.Request) -> web.Response:
        """Answer the reverse proxy's health check without touching the store."""
        return web.Response(text="ok")

    async def _approve(self, request: web.Request) -> web.Response:
        """Verify, de-duplicate and publish one keypress from Twilio."""
        src = request.remote or ""
        token = request.query.get("t", "")
        if _TOKEN_RE.fullmatch(token) is None:
            log.warning("webhook_rejected", reason="bad_token", src=src)
            return web.Response(status=400, text="bad request")
        tid = token_id(token)
        signature = request.headers.get(_SIGNATURE_HEADER)
        if not signature:
            log.warning("webhook_rejected", reason="missing_signature", src=src, token_id=tid)
            return web.Response(status=403, text="forbidden")
        form = await request.post()
        params: dict[str, str | list[str]] = {}
        for name in form:
            values = [value for value in form.getall(name) if isinstance(value, str)]
            params[name] = values[0] if len(values) == 1 else values
        if not self._signed_by_twilio(self.action_url(token), params, signature):
            log.warning("webhook_rejected", reason="bad_signature", src=src, token_id=tid)
            return web.Response(status=403, text="forbidden")
        digits = params.get("Digits")
        result = result_for_digits(digits if isinstance(digits, str) else None)
        call_sid = params.get("CallSid")
        call_sid = call_sid if isinstance(call_sid, str) else ""
        try:
            first = await self._marks.mark_once(f"hook:{token}", self._result_ttl)
            if first:
                await self._results.publish_result(token, result.value, self._result_ttl)
        except BackendError as exc:
            log.warning("backend_failed", backend=exc.backend, error=exc.detail, token_id=tid)
            return web.Response(status=503, text="unavailable")
        if not first:
            log.warning("webhook_replayed", token_id=tid, call_sid=call_sid, src=src)
        else:
            log.info("webhook_answered", result=result.value, token_id=tid, call_sid=call_sid)
        return _twiml_response(reply_twiml(result))

    def _signed_by_twilio(
        self, url: str, params: dict[str, str | list[str]], signature: str
    ) -> bool:
        """Check X-Twilio-Signature (HMAC-SHA1 with the auth token) over the public URL."""
        valid = self._validator.validate(url, params, signature)
        return valid is True
