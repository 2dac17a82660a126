"""The life cycle shared by the servers the tests run (redis-server, slapd, FreeRADIUS).

Each server class writes its own configuration and knows how to start and when it is ready;
stopping, restarting on the same port, freezing (SIGSTOP: the kernel still accepts
connections, nothing answers) and the ``with`` block are the same for all of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
from types import TracebackType
from typing import Self


class ServerProcess:
    """Base of the test servers: subclasses set ``_proc`` in :meth:`start`."""

    _proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server (also a frozen one) and wait for the process to exit."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> None:
        """Stop the server and start it again on the same port(s)."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted, nothing answers."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a frozen server run again (SIGCONT)."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
