"""The audit record: what one request established, returned with its decision.

The login engine fills one record per request and hands it back with the decision; the request
handler writes it as the canonical ``request_finished`` line. Nothing here is ambient: a field
belongs to the request whose engine learnt it, so a background task (a batched lookup, a Redis
subscriber) can never carry another request's fields into its own log lines.

Only non-secret values go in: the user's id, names and e-mail, the factor, the State's log id
(never the State), the last two digits of a phone number, counts and reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Notice:
    """A warning the engine wants logged on the request's behalf (it never logs itself).

    Attributes:
        event: the log event name (``user_locked``, ``fraud_reported``, ``delivery_failed``).
        detail: extra non-secret fields, as ``(key, value)`` pairs.
    """

    event: str
    detail: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class Audit:
    """The audit fields one login learnt; ``None`` means "not learnt" and is not written.

    Attributes:
        mode: the client's mode (``challenge``, ``append``, ``approve``, ``none``).
        factor: the second factor asked for or checked.
        state_id: the first 8 hex digits of the SHA-256 of the State.
        user_id: the enrolment database's id of the user.
        display_name: the user's display name (directory or database).
        email: the user's e-mail address.
        phone_tail: the last two digits of the number a code or call went to.
        attempt: which answer to this challenge the request carried (1 for the first).
        upstream: the home server that answered the password check.
        limit: the send limit that refused a text or call.
        delivery_code: the provider's error code when it refused a number.
        notices: warnings to log with the request's fields.
    """

    mode: str | None = None
    factor: str | None = None
    state_id: str | None = None
    user_id: str | None = None
    display_name: str | None = None
    email: str | None = None
    phone_tail: str | None = None
    attempt: int | None = None
    upstream: str | None = None
    limit: str | None = None
    delivery_code: int | None = None
    notices: tuple[Notice, ...] = ()

    def fields(self) -> dict[str, object]:
        """The learnt fields by log key (notices excluded), in declaration order."""
        out: dict[str, object] = {}
        for f in _FIELDS:
            value = getattr(self, f)
            if value is not None:
                out[f] = value
        return out


_FIELDS = tuple(f.name for f in fields(Audit) if f.name != "notices")


def phone_tail(number: str) -> str:
    """The audit ``phone_tail`` value: the last two digits, or empty."""
    digits = [c for c in number if c.isdigit()]
    return "".join(digits[-2:])


class Notes:
    """The audit fields of one login while its engine runs; frozen into an :class:`Audit`.

    Each engine instance owns one: it is passed explicitly to the factor modules, never found
    through a context variable.
    """

    __slots__ = ("_fields", "_notices")

    def __init__(self, **fields: object) -> None:
        self._fields: dict[str, object] = dict(fields)
        self._notices: list[Notice] = []

    def note(self, **fields: object) -> None:
        """Record fields (later values win)."""
        self._fields.update(fields)

    def note_unless_known(self, **fields: str) -> None:
        """Record fields, but never let an empty value replace one already learnt.

        The enrolment database's display name wins over the directory's, except when the
        database has none: then the directory's stays.
        """
        for key, value in fields.items():
            if value or key not in self._fields:
                self._fields[key] = value

    def notice(self, event: str, **detail: object) -> None:
        """Ask for a warning line about this request."""
        self._notices.append(Notice(event, tuple(detail.items())))

    def freeze(self) -> Audit:
        """The record so far, as a value.

        Raises:
            TypeError: a field name that :class:`Audit` does not have (a programming error).
        """
        return Audit(**self._fields, notices=tuple(self._notices))  # type: ignore[arg-type]  # field names and types are checked by Audit itself at construction
