"""Per-client decisions: the settings a NAS gets, username normalisation, and fail modes.

A client (NAS) carries its own policy so that one proxy can serve a VPN gateway that shows a
prompt (challenge mode), a legacy client that appends the code to the password (append mode)
and a NAS that must not do MFA at all (mode none), each with its own fail mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from mfa_radius.core import prompts
from mfa_radius.core.model import (
    Accept,
    AcceptReason,
    Attribute,
    Factor,
    FailMode,
    Mode,
    Reject,
    RejectReason,
    Unenrolled,
)


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    r"""How logins from one NAS are decided.

    Attributes:
        name: the client's configured name (audit ``client`` key).
        mode: challenge, append or none.
        unenrolled: what to do with a user who has no second factor.
        fail_mode: what a backend failure after a correct password means.
        append_delimiter: separator between password and code in append mode.
        prompt: Access-Challenge Reply-Message (``{digits}`` is replaced).
        retry_prompt: Reply-Message after a wrong code.
        challenge_ttl: seconds a pending challenge lives.
        max_attempts: wrong codes allowed per challenge before it is rejected.
        lookback_steps: TOTP steps accepted before the current one (RFC 6238 §5.2).
        lookforward_steps: TOTP steps accepted after the current one.
        response_window: seconds the NAS waits for an answer; every request is answered
            within it.
        fold_case: compare usernames case-insensitively.
        strip_domain: turn ``DOMAIN\user`` into ``user``.
        strip_realm: turn ``user@realm`` into ``user``.
        exempt_users: normalised usernames that skip the second factor.
        exempt_groups: case-folded directory groups whose members skip the second factor.
        require_groups: when not empty, users outside these groups are rejected.
        pass_reply_message: pass the primary's Reply-Message of a reject on to the NAS.
        factors: second factors allowed, in preference order.
        show_menu: offer the other phone factors at the prompt.
        sms_prompt: prompt after a text message (``{phone}``: masked number).
        voice_prompt: prompt after a call that read the code.
        sms_text: the text message (``{code}``, ``{minutes}``, ``{organisation}``).
        sms_sender: E.164 number or Messaging Service SID the texts come from.
        voice_caller_id: E.164 number calls come from.
        organisation: named in texts and calls (carriers may drop the caller id).
        language: language of the spoken text (TwiML ``<Say language>``).
        allowed_regions: ISO regions phone factors may go to; empty allows all.
        default_region: region of numbers stored without a country code.
        code_length: digits of a sent code.
    """

    name: str
    mode: Mode = Mode.CHALLENGE
    unenrolled: Unenrolled = Unenrolled.REJECT
    fail_mode: FailMode = FailMode.SECURE
    append_delimiter: str = ","
    prompt: str = prompts.DEFAULT_PROMPT
    retry_prompt: str = prompts.DEFAULT_RETRY_PROMPT
    challenge_ttl: float = 300.0
    max_attempts: int = 3
    lookback_steps: int = 1
    lookforward_steps: int = 1
    response_window: float = 10.0
    fold_case: bool = True
    strip_domain: bool = False
    strip_realm: bool = False
    exempt_users: frozenset[str] = frozenset()
    exempt_groups: frozenset[str] = frozenset()
    require_groups: frozenset[str] = frozenset()
    pass_reply_message: bool = False
    factors: tuple[Factor, ...] = (Factor.TOTP,)
    show_menu: bool = True
    sms_prompt: str = prompts.DEFAULT_SMS_PROMPT
    voice_prompt: str = prompts.DEFAULT_VOICE_PROMPT
    sms_text: str = "{organisation} sign-in code: {code}. Valid for {minutes} minutes."
    sms_sender: str = ""
    voice_caller_id: str = ""
    organisation: str = "mfa-radius"
    language: str = "en-US"
    allowed_regions: frozenset[str] = frozenset()
    default_region: str | None = None
    code_length: int = 6


def normalise_username(raw: str, policy: ClientPolicy) -> str:
    r"""Map the User-Name a NAS sent to the enrolment key.

    ``EXAMPLE\Alice``, ``Alice@example.org`` and ``alice`` reach the same user when the client
    strips domains and realms and folds case.

    Args:
        raw: User-Name as received.
        policy: the client's settings.

    Returns:
        The normalised name, stripped of surrounding white space.
    """
    name = raw.strip()
    if policy.strip_domain and "\\" in name:
        name = name.rsplit("\\", 1)[1]
    if policy.strip_realm and "@" in name:
        name = name.split("@", 1)[0]
    if policy.fold_case:
        name = name.casefold()
    return name


def on_backend_failure(
    reason: RejectReason,
    policy: ClientPolicy,
    *,
    primary_verified: bool,
    attributes: tuple[Attribute, ...],
) -> Accept | Reject:
    """Turn a failed dependency into a decision according to the client's fail mode.

    ``safe`` accepts without a second factor only when the password was verified in this very
    request: a second round whose challenge record cannot be read never knows that, so it is
    always rejected. A primary backend that is down is never "safe": the password is unknown.

    Args:
        reason: the reject reason naming the failed dependency.
        policy: the client's settings.
        primary_verified: whether the primary password was checked in this request.
        attributes: reply attributes granted by the primary backend.

    Returns:
        ``Accept(FAIL_SAFE)`` or ``Reject(reason)``.
    """
    if (
        policy.fail_mode is FailMode.SAFE
        and primary_verified
        and reason is not RejectReason.PRIMARY_UNAVAILABLE
    ):
        return Accept(AcceptReason.FAIL_SAFE, attributes)
    return Reject(reason)
