"""Log redaction and rendering: secrets never reach a line, tracebacks carry no locals."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from mfa_radius import logs

# Kept out of the raising lines so that a source line in a traceback cannot show them.
SECRETS = {"hunter2": "hunter2" + "-secret", "hunter3": "hunter3" + "-secret"}


@pytest.fixture
def buffer() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure(level="debug", fmt="json", stream=stream, cache=False)
    yield stream
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_denied_keys_are_dropped(buffer: io.StringIO) -> None:
    """password, code, secret, token and state never reach the output, whoever logs them."""
    structlog.get_logger().info(
        "oops", password="hunter2", code="123456", secret="s3", token="tok", state="aa", user="al"
    )
    text = buffer.getvalue()
    for value in ("hunter2", "123456", "s3", "tok", '"aa"'):
        assert value not in text
    assert _lines(buffer)[0]["user"] == "al"


def test_phone_numbers_are_masked(buffer: io.StringIO) -> None:
    """A phone number keeps only its last two digits."""
    structlog.get_logger().info("sent", phone="+4915112345678")
    assert _lines(buffer)[0]["phone"] == "***********78"


def test_traceback_has_no_local_variables(buffer: io.StringIO) -> None:
    """An exception logged with its traceback does not show the frame's locals."""

    def check(password: str) -> None:
        raise ValueError("bad")

    try:
        check(SECRETS["hunter2"])
    except ValueError:
        structlog.get_logger().exception("request_failed")
    text = buffer.getvalue()
    assert "request_failed" in text
    assert "ValueError" in text
    assert "hunter2-secret" not in text


def test_console_traceback_has_no_local_variables() -> None:
    """The console renderer prints plain tracebacks, without locals."""
    stream = io.StringIO()
    logs.configure(level="info", fmt="console", stream=stream, cache=False)

    def check(password: str) -> None:
        raise RuntimeError("boom")

    try:
        check(SECRETS["hunter3"])
    except RuntimeError:
        structlog.get_logger().exception("request_failed")
    finally:
        structlog.reset_defaults()
    assert "boom" in stream.getvalue()
    assert "hunter3-secret" not in stream.getvalue()


def test_level_filter_drops_debug(buffer: io.StringIO) -> None:
    """At level info, debug lines are not written."""
    stream = io.StringIO()
    logs.configure(level="info", fmt="json", stream=stream, cache=False)
    structlog.get_logger().debug("noise")
    structlog.get_logger().info("signal")
    assert [line["event"] for line in _lines(stream)] == ["signal"]


def test_phone_tail_keeps_two_digits() -> None:
    """phone_tail is the audit key's last two digits."""
    assert logs.phone_tail("+1 (555) 010-9988") == "88"
