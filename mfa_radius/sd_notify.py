"""Tell systemd how the proxy is doing: the sd_notify(3) datagram protocol, without libsystemd.

A service started with ``Type=notify`` finds in ``$NOTIFY_SOCKET`` the AF_UNIX datagram socket
of its service manager: a file system path (``/run/systemd/notify``) or, when the value starts
with ``@``, a name in the abstract namespace (the ``@`` stands for the leading NUL byte). Each
message is one datagram of newline-separated ``KEY=VALUE`` lines: ``READY=1``, ``STATUS=...``,
``STOPPING=1``, ``WATCHDOG=1`` (see sd_notify(3), "Well-known assignments"). With
``WatchdogSec=`` the manager sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, the process meant
to ping) and restarts the service when no ``WATCHDOG=1`` arrives within that time;
sd_watchdog_enabled(3) advises pinging every half of it.

Rules of this module:

* It never raises into the proxy and never blocks: the socket is non-blocking, and a message
  that cannot be sent (no such socket, a full queue, a refused address) is counted in
  :attr:`Notifier.failures`; only the first failure is logged (``notify_failed``), so a
  vanished manager socket does not fill the log with one warning per watchdog ping.
* Without ``$NOTIFY_SOCKET`` (run from a shell, a container without systemd) it does nothing.
* It reads the environment itself, although configuration is read only by ``config``: these
  variables are not configuration but the service manager's hand-over to this one process,
  meaningless in a configuration file and different at every start.
* It does not unset the variables: the proxy starts no child process that could inherit them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger("mfa_radius.sd_notify")


def socket_address(name: str) -> str | bytes | None:
    """The ``sendto`` address for a ``$NOTIFY_SOCKET`` value.

    Args:
        name: the variable's value.

    Returns:
        The path for an absolute path; the abstract name (NUL byte first) for ``@name``;
        None for anything else (an empty or relative value, or an ``AF_VSOCK`` address, which
        this sender does not speak).
    """
    if name.startswith("@") and len(name) > 1:
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    return None


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """How often to send ``WATCHDOG=1``, as sd_watchdog_enabled(3) decides whether to.

    Args:
        environ: the environment (default ``os.environ``).
        pid: this process's id (default ``os.getpid()``).

    Returns:
        Half of ``$WATCHDOG_USEC``, in seconds; None when the variable is unset, not a positive
        integer, or when ``$WATCHDOG_PID`` is set and names another process.
    """
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC", "")
    if not usec_text.isdigit() or int(usec_text) <= 0:
        return None
    pid_text = env.get("WATCHDOG_PID", "")
    if pid_text:
        me = os.getpid() if pid is None else pid
        if not pid_text.isdigit() or int(pid_text) != me:
            return None
    return int(usec_text) / 2 / 1_000_000


class Notifier:
    """Sends sd_notify messages to one service-manager socket; a no-op without one.

    Args:
        name: the ``$NOTIFY_SOCKET`` value, or None when it is unset.
    """

    def __init__(self, name: str | None) -> None:
        self._name = name
        self._address = socket_address(name) if name else None
        self._sock: socket.socket | None = None
        #: messages that could not be sent (only the first one is logged)
        self.failures = 0
        #: messages sent
        self.sent = 0
        if name and self._address is None:
            self._failed(f"unsupported address {name!r} (a path or @abstract name expected)")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier for ``$NOTIFY_SOCKET``.

        Args:
            environ: the environment (default ``os.environ``).

        Returns:
            A notifier; one that sends nothing when the variable is unset or empty.
        """
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        """A service manager's socket is known (messages are attempted)."""
        return self._address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` (``KEY=VALUE`` each) as one datagram.

        Args:
            lines: the assignments, without newlines.

        Returns:
            True when the datagram was handed to the kernel; False when there is no socket to
            send to or the send failed (counted in :attr:`failures`, logged the first time).
        """
        if self._address is None:
            return False
        data = "\n".join(lines).encode()
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(data, self._address)
        except OSError as exc:
            self._failed(f"{type(exc).__name__}: {exc.strerror or exc}")
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        """Start-up is complete: ``READY=1`` with a ``STATUS=`` line for ``systemctl status``."""
        return self.notify("READY=1", f"STATUS={status}")

    def stopping(self, status: str = "Stopping") -> bool:
        """A stop began: ``STOPPING=1`` with a ``STATUS=`` line."""
        return self.notify("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        """The event loop is alive: ``WATCHDOG=1``."""
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket (messages after this open a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _failed(self, reason: str) -> None:
        self.failures += 1
        if self.failures == 1:
            log.warning("notify_failed", socket=self._name, error=reason)
