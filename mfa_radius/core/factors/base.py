"""The factor protocol: what every second factor tells the login engine.

A factor plug-in answers three questions, and nothing else:

* ``usable``: can this user use it at this client (a token enrolled, a valid phone number)?
* ``start``: what happens when the engine picks it: nothing (a TOTP prompt), a code sent by
  text or call (its keyed hash goes into the challenge record), or a decision reached out of
  band (an approve call);
* ``check``: does an answer typed at the prompt satisfy it?

``start`` and ``check`` are effect generators (``core.effects.Steps``): they ask for store
writes, sends and waits as values, so a plug-in stays pure and is tested with scripted results.
Adding a factor is one module implementing :class:`FactorPlugin` plus one entry in
``factors.REGISTRY``; the engine does not change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from mfa_radius.core.audit import Notes
from mfa_radius.core.effects import Steps
from mfa_radius.core.limits import Lockout, SendLimits
from mfa_radius.core.model import Accept, Attribute, Factor, PendingChallenge, Reject, User
from mfa_radius.core.policy import ClientPolicy


@dataclass(frozen=True, slots=True)
class Settings:
    """Cluster-wide settings of the login engine (the same on every node).

    Attributes:
        send_limits: limits on texts and calls.
        lockout: the wrong-code lockout.
        code_key: the key hashing sent codes (derived from the enrolment key).
        gather_seconds: how long an approve call waits for a key.
        can_send: a text/voice provider is configured.
        can_approve: a provider and the webhook listener are configured.
    """

    send_limits: SendLimits = field(default_factory=SendLimits)
    lockout: Lockout = field(default_factory=Lockout)
    code_key: bytes = field(default=b"", repr=False)
    gather_seconds: int = 15
    can_send: bool = False
    can_approve: bool = False


@dataclass(frozen=True, slots=True)
class Fresh:
    """Random values one request may need, drawn by the caller from ``secrets``.

    Attributes:
        state: a new State (16 random bytes) for a challenge this request issues.
        digits: random decimal digits; a sent code is their first ``code_length``.
        token: the random token of an approve call.
    """

    state: bytes = field(repr=False)
    digits: str = field(repr=False)
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Context:
    """What a factor may use while it starts or checks.

    Attributes:
        user: the enrolled user.
        phone: the user's E.164 number ("" when none is usable).
        policy: the client's settings.
        settings: the cluster's settings.
        now: the request's time, epoch seconds.
        deadline: epoch seconds by which the request must be decided.
        state: the State of the challenge being started or answered.
        fresh: random values for this request.
        notes: this request's audit fields.
        attributes: reply attributes from the primary backend, for an Accept.
    """

    user: User
    phone: str
    policy: ClientPolicy
    settings: Settings
    now: float
    deadline: float
    state: bytes = field(repr=False)
    fresh: Fresh
    notes: Notes
    attributes: tuple[Attribute, ...] = ()


class Verdict(enum.Enum):
    """What a factor says about an answer typed at the prompt."""

    MATCH = "match"  #: the answer is right and was used for the first time
    NO_MATCH = "no_match"  #: not this factor's answer
    REPLAYED = "replayed"  #: right, but already used (a TOTP code in its time step)


Started = str | Accept | Reject
"""The result of ``start``: the keyed hash of a sent code ("" when nothing was sent), or a
decision the factor reached by itself (an approve call's keypress, a refused send)."""


class FactorPlugin(Protocol):
    """A second factor, as the login engine sees it."""

    @property
    def factor(self) -> Factor:
        """The factor's name (audit ``factor``, profile ``factors`` entry)."""
        ...

    @property
    def at_prompt(self) -> bool:
        """True when the user answers it at an Access-Challenge prompt."""
        ...

    def usable(self, user: User, phone_ok: bool) -> bool:
        """Whether ``user`` can use this factor (``phone_ok``: a valid, allowed number)."""
        ...

    def start(self, ctx: Context) -> Steps[Started]:
        """Begin the factor for a new challenge (or a switch at the prompt)."""
        ...

    def check(self, ctx: Context, record: PendingChallenge, answer: str) -> Steps[Verdict]:
        """Judge an answer to the pending challenge ``record``."""
        ...
