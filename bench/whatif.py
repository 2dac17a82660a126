"""Run ``mfa-radius serve`` with one hot-path cost removed, to size an optimisation first.

A profile says where the time goes; it does not say how much throughput removing it buys
(costs overlap, and the event loop's own overhead moves with them). This entry point starts the
real proxy with one of these patches applied, so that the same benchmark measures the upper
bound of each proposed change before anyone writes it. None of them is a valid production
configuration: each drops something the product needs (deadlines, audit fields).

* ``no-timeouts``: ``asyncio.timeout`` in ``server`` and ``service`` becomes a no-op context
  (what skipping per-call deadlines around a store that cannot block would save, at most);
* ``no-contextvars``: structlog's ``bind_contextvars`` / ``clear_contextvars`` become no-ops
  in ``server`` and ``service`` (what carrying audit fields in a plain per-request object
  instead would save, at most; the audit line loses those fields);
* ``no-audit-log``: the ``request_finished`` line is not written (what a cheaper audit line
  could save, at most);
* ``switch-interval``: ``sys.setswitchinterval(0.0005)`` instead of 5 ms, so that the SQLite
  worker threads get the GIL back sooner from a busy event loop (the thread hand-off latency
  of aiosqlite, not its CPU).

Usage::

    python -m bench.whatif --patch no-timeouts [--patch ...] serve -c radius.conf
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from mfa_radius import server, service
from mfa_radius.cli import cli

PATCHES = ("no-timeouts", "no-contextvars", "no-audit-log", "switch-interval")


@contextlib.asynccontextmanager
async def _no_deadline(_: float | None) -> Any:
    yield None


class _NoTimeoutAsyncio:
    """Stands in for the ``asyncio`` module inside a patched module: all but ``timeout``."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    @staticmethod
    def timeout(delay: float | None) -> Any:
        return _no_deadline(delay)


class _NoContextvars:
    """Stands in for ``structlog.contextvars`` where the audit fields are bound."""

    @staticmethod
    def bind_contextvars(**_: Any) -> dict[str, Any]:
        return {}

    @staticmethod
    def clear_contextvars() -> None:
        return None


class _NoStructlog:
    """Stands in for ``structlog`` in a patched module: no-op context functions."""

    contextvars = _NoContextvars()

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def apply(patch: str) -> None:
    """Apply one patch to the imported modules."""
    modules: tuple[Any, ...] = (server, service)
    if patch == "no-timeouts":
        for module in modules:
            module.asyncio = _NoTimeoutAsyncio(module.asyncio)
    elif patch == "no-contextvars":
        for module in modules:
            module.structlog = _NoStructlog(module.structlog)
    elif patch == "no-audit-log":
        original = server.RadiusServer._finish

        def finish(self: server.RadiusServer, outcome: Any, started: float) -> None:
            saved = server.log
            server.log = _Silent()
            try:
                original(self, outcome, started)
            finally:
                server.log = saved

        server.RadiusServer._finish = finish  # type: ignore[method-assign]
    elif patch == "switch-interval":
        sys.setswitchinterval(0.0005)
    else:
        raise ValueError(f"unknown patch {patch!r}; choose from {PATCHES}")


class _Silent:
    """A logger that drops ``info`` lines."""

    def info(self, *_: Any, **__: Any) -> None:
        return None


def main(argv: list[str] | None = None) -> None:
    """Parse ``--patch`` options, apply them, and hand the rest to the ``mfa-radius`` CLI."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--patch", action="append", choices=PATCHES, default=[])
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    for patch in args.patch:
        apply(patch)
    cli(rest)


if __name__ == "__main__":
    main()
