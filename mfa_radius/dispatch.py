"""Phone factors: sending codes by text or call, approve calls, abuse limits and lockout.

Called by the Authenticator only after a correct password. Every send first passes the limits
of ``core.limits`` (per user, per number, per region, per day, and a cool-down), counted in
the shared store so they hold for the whole cluster; a send over a limit is refused with a
logged reason and nothing is sent. Provider failures come back as ``DeliveryFailed``: a
refused number (permanent) rejects the login, an outage is left to the profile's fail mode.

Approve calls ask the user to press a key. Twilio posts the keypress to the webhook of
whichever node it reaches; that node publishes the result in the store, and the node holding
the Access-Request wakes at once (``ChallengeStore.wait_result``).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from mfa_radius import logs
from mfa_radius.core import factors, limits
from mfa_radius.core.model import (
    Accept,
    AcceptReason,
    Attribute,
    Factor,
    Reject,
    RejectReason,
)
from mfa_radius.core.policy import ClientPolicy
from mfa_radius.core.twiml import CallResult, approve_action_url, approve_twiml, code_twiml
from mfa_radius.deadlines import Deadlines
from mfa_radius.errors import DeliveryFailed
from mfa_radius.ports import ChallengeStore, Clock, CodeSender, Delivery

log = structlog.get_logger("mfa_radius.dispatch")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PhoneSettings:
    """Cluster-wide settings of the phone factors.

    Attributes:
        send_limits: send limits.
        lockout: wrong-code lockout.
        code_key: key hashing sent codes (the same on every node).
        webhook_url: public base URL of the webhook listener ("" when approve is unused).
        gather_seconds: how long an approve call waits for a key.
    """

    send_limits: limits.SendLimits
    lockout: limits.Lockout
    code_key: bytes
    webhook_url: str = ""
    gather_seconds: int = 15


class PhoneFactors:
    """Sends codes and approve calls within the limits; counts wrong codes.

    Args:
        sender: the SMS/voice provider, or None when no provider is configured.
        store: the shared store (counters, marks, approve results).
        clock: time source.
        settings: limits, lockout and keys.
        deadlines: the shared deadline timer.
        store_timeout: deadline of one store operation.
        send_timeout: deadline of one provider request.
    """

    def __init__(
        self,
        *,
        sender: CodeSender | None,
        store: ChallengeStore,
        clock: Clock,
        settings: PhoneSettings,
        deadlines: Deadlines,
        store_timeout: float,
        send_timeout: float,
    ) -> None:
        self._sender = sender
        self._store = store
        self._clock = clock
        self._settings = settings
        self._deadlines = deadlines
        self._store_timeout = store_timeout
        self._send_timeout = send_timeout

    @property
    def code_key(self) -> bytes:
        """The key hashing sent codes."""
        return self._settings.code_key

    async def _store_call(self, awaitable: Awaitable[T]) -> T:
        if not self._store.shared:
            return await awaitable  # in-process: never waits on I/O
        return await self._deadlines.run(awaitable, self._store_timeout, "store")

    # lockout ------------------------------------------------------------------------------

    async def locked(self, username: str) -> bool:
        """Whether wrong codes have locked the user out for now."""
        return await self._store_call(self._store.peek_count(limits.lock_key(username))) > 0

    async def count_failure(self, username: str) -> bool:
        """Count one wrong code; lock the user when past the threshold. True when locked."""
        lockout = self._settings.lockout
        failures = await self._store_call(
            self._store.count(limits.failures_key(username), lockout.memory)
        )
        delay = limits.lockout_delay(failures, lockout)
        if delay:
            await self._store_call(self._store.count(limits.lock_key(username), delay))
            log.warning("user_locked", failures=failures, seconds=delay)
            return True
        return False

    async def clear_failures(self, username: str) -> None:
        """Forget the user's wrong codes after a successful login."""
        await self._store_call(self._store.delete(limits.failures_key(username)))

    async def lock_for_fraud(self, username: str) -> None:
        """Lock the user for the longest lockout: they said the attempt was not theirs."""
        await self._store_call(
            self._store.count(limits.lock_key(username), self._settings.lockout.max_delay)
        )

    # sending ------------------------------------------------------------------------------

    async def _within_limits(self, username: str, phone: str) -> bool:
        """Count this send against every limit; False (and logged) when one is exceeded."""
        cfg = self._settings.send_limits
        if not await self._store_call(
            self._store.mark_once(limits.cooldown_key(username), cfg.cooldown)
        ):
            logs.note(limit="cooldown")
            return False
        day = int(self._clock.now() // limits.DAY)
        counters = limits.send_counters(
            cfg, username=username, number=phone, region=factors.region_of(phone), day=day
        )
        for key, rate, reason in counters:
            if await self._store_call(self._store.count(key, rate.window)) > rate.count:
                logs.note(limit=reason)
                return False
        return True

    async def send_code(
        self,
        factor: Factor,
        *,
        username: str,
        phone: str,
        policy: ClientPolicy,
        state: bytes,
        language: str = "",
    ) -> str | Reject:
        """Send a fresh code by text or call; return its keyed hash for the challenge record.

        Args:
            factor: SMS or VOICE.
            username: the normalised user (limits, audit).
            phone: the E.164 destination.
            policy: the client's settings (sender, texts, code length).
            state: the challenge's State (the hash is bound to it).
            language: the user's call language; empty for the profile's.

        Returns:
            The code's hash, or Reject (a limit was reached, or the number was refused).

        Raises:
            DeliveryFailed: the provider is down (not permanent); the fail mode decides.
            StoreUnavailable: the limits could not be counted.
        """
        logs.note(factor=factor.value, phone_tail=logs.phone_tail(phone))
        if self._sender is None:
            raise DeliveryFailed("sender", "no SMS/voice provider is configured")
        if not await self._within_limits(username, phone):
            return Reject(RejectReason.SEND_LIMITED)
        code = str(secrets.randbelow(10**policy.code_length)).zfill(policy.code_length)
        if factor is Factor.SMS:
            minutes = max(int(policy.challenge_ttl // 60), 1)
            body = factors.sms_text(
                policy.sms_text, code=code, minutes=minutes, organisation=policy.organisation
            )
            refused = await self._deliver(
                self._sender.send_sms(phone, body, sender=policy.sms_sender)
            )
        else:
            twiml = code_twiml(
                code, organisation=policy.organisation, language=language or policy.language
            )
            refused = await self._deliver(
                self._sender.call(phone, twiml, caller_id=policy.voice_caller_id)
            )
        return refused or factors.code_hash(self._settings.code_key, state, code)

    async def _deliver(self, request: Awaitable[Delivery]) -> Reject | None:
        """Hand one message or call to the provider, once, within the send deadline.

        Returns:
            Reject(delivery_rejected) when the provider refused the number; None when sent.

        Raises:
            DeliveryFailed: the provider is down or did not answer in time.
        """
        try:
            await self._deadlines.run(request, self._send_timeout, "delivery")
        except DeliveryFailed as exc:
            if exc.permanent:
                logs.note(delivery_code=exc.code)
                return Reject(RejectReason.DELIVERY_REJECTED)
            raise
        except TimeoutError:
            raise DeliveryFailed("delivery", "timeout") from None
        return None

    async def approve(
        self,
        *,
        username: str,
        phone: str,
        policy: ClientPolicy,
        attributes: tuple[Attribute, ...],
        budget: float,
        language: str = "",
    ) -> Accept | Reject:
        """Call the user and wait (at most ``budget`` seconds) for them to press a key.

        Args:
            username: the normalised user.
            phone: the E.164 number to call.
            policy: the client's settings (caller id, language, organisation).
            attributes: reply attributes for the Accept.
            budget: seconds left in the NAS's response window.
            language: the user's call language; empty for the profile's.

        Returns:
            Accept when the user pressed 1; Reject otherwise (denied, no key in time, fraud
            reported - which also locks the user out).

        Raises:
            DeliveryFailed: the provider is down (not permanent); the fail mode decides.
            StoreUnavailable: the store could not be used.
        """
        logs.note(factor=Factor.APPROVE.value, phone_tail=logs.phone_tail(phone))
        if self._sender is None or not self._settings.webhook_url:
            raise DeliveryFailed("sender", "approve calls need [twilio] and [webhook]")
        if not await self._within_limits(username, phone):
            return Reject(RejectReason.SEND_LIMITED)
        token = secrets.token_urlsafe(16)
        twiml = approve_twiml(
            action_url=approve_action_url(self._settings.webhook_url, token),
            organisation=policy.organisation,
            language=language or policy.language,
            timeout_s=self._settings.gather_seconds,
        )
        refused = await self._deliver(
            self._sender.call(phone, twiml, caller_id=policy.voice_caller_id)
        )
        if refused is not None:
            return refused
        result = await self._store.wait_result(token, max(budget, 0.0))
        if result == CallResult.APPROVE:
            return Accept(AcceptReason.MFA_OK, attributes)
        if result == CallResult.FRAUD:
            await self.lock_for_fraud(username)
            log.warning("fraud_reported")
            return Reject(RejectReason.FRAUD_REPORTED)
        if result is None:
            return Reject(RejectReason.APPROVAL_TIMEOUT)
        return Reject(RejectReason.APPROVAL_DENIED)
