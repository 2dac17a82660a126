"""Logging: structlog set-up, the fixed audit keys, and redaction.

One ``request_finished`` line per request carries the audit keys admins expect (user, client,
outcome, reason, factor, ...): the request handler binds the request's fields to a logger it
passes down and adds the engine's audit record, so no log line depends on ambient context.
Secrets never reach a log line: the code never passes them to a
logger, and as a last line of defence :func:`redact` drops a denylist of keys, masks phone
numbers, and tracebacks are rendered without local variables (a frame's locals would hold the
password being checked).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, WrappedLogger

from mfa_radius.core.audit import phone_tail

AUDIT_KEYS = (
    "req_id",
    "client",
    "src",
    "user",
    "user_id",
    "display_name",
    "email",
    "state_id",
    "mode",
    "factor",
    "outcome",
    "reason",
    "upstream",
    "phone_tail",
    "attempt",
    "duration_ms",
    "node",
    "server_ip",
)
"""Keys of the canonical ``request_finished`` line, in the order admins read them."""

__all__ = ["AUDIT_KEYS", "DENIED_KEYS", "configure", "flush", "mask_phone", "phone_tail", "redact"]

DENIED_KEYS = frozenset(
    {
        "password",
        "user_password",
        "code",
        "otp",
        "secret",
        "shared_secret",
        "seed",
        "totp_secret",
        "token",
        "auth_token",
        "state",
        "raw_state",
        "key",
        "packet",
    }
)
"""Keys never written, whatever their value: a last guard against a careless call."""

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def mask_phone(number: str) -> str:
    """Keep the last two digits of a phone number: enough to recognise it, useless to abuse."""
    digits = [c for c in number if c.isdigit()]
    return "*" * max(len(digits) - 2, 0) + "".join(digits[-2:])


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Drop denied keys and mask phone numbers before rendering (structlog processor)."""
    for key in DENIED_KEYS.intersection(event_dict):
        del event_dict[key]
    phone = event_dict.get("phone")
    if isinstance(phone, str):
        event_dict["phone"] = mask_phone(phone)
    return event_dict


def _orjson_dumps(obj: MutableMapping[str, Any], **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


class _BufferedLogger:
    """Writes lines without flushing each one: :func:`flush` is called every 100 ms.

    structlog's WriteLogger flushes after every line, a write system call per request; at
    thousands of requests per second that is a visible share of the CPU. A line waits at most
    one flush period, and :func:`flush` runs again at shutdown.
    """

    def __init__(self, stream: TextIO) -> None:
        self._write = stream.write

    def msg(self, message: str) -> None:
        """Write one rendered line."""
        self._write(message + "\n")

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


_STREAM: list[TextIO] = [sys.stdout]


def flush() -> None:
    """Flush buffered log lines (called periodically by the server and at shutdown)."""
    _STREAM[0].flush()


def configure(
    *, level: str = "info", fmt: str = "json", stream: TextIO | None = None, cache: bool = True
) -> None:
    """Configure structlog once, from the composition root.

    Args:
        level: lowest level written (``debug`` ... ``error``).
        fmt: ``json`` (one object per line) or ``console`` (for a terminal).
        stream: where lines go; standard output by default.
        cache: let each logger keep its configuration after first use (fast; turn off only
            where the configuration changes later, as in tests).

    JSON lines are buffered and written out by :func:`flush`; console lines are flushed one
    by one (a person is reading).
    """
    target = stream or sys.stdout
    _STREAM[0] = target
    renderer: structlog.typing.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
        exceptions: list[structlog.typing.Processor] = []
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        exceptions = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        ]
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            *exceptions,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=(
            structlog.WriteLoggerFactory(file=target)
            if fmt == "console"
            else lambda *_: _BufferedLogger(target)
        ),
        cache_logger_on_first_use=cache,
    )
