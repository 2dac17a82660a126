"""Fixtures of the interop tests: FreeRADIUS tools run as subprocesses against our proxy.

A missing tool is a test failure with an install hint, never a skip: the interop suite is
only worth something when it runs.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

DICTIONARY_DIR = Path("/usr/share/freeradius")
"""Where Debian's freeradius-common installs the FreeRADIUS dictionaries."""

INSTALL_HINT = "apt-get install freeradius-utils"

_RECEIVED = re.compile(r"^Received (?P<code>[A-Za-z-]+) Id \d+ ")
_ATTRIBUTE = re.compile(r"^\s+(?P<name>[A-Za-z0-9-]+) = (?P<value>.*)$")


@dataclass(frozen=True, slots=True)
class RadclientRun:
    """What one ``radclient -x`` run printed and how it exited.

    Attributes:
        returncode: the exit status (0: every reply was the expected kind).
        stdout: the debug output (sent and received packets).
        stderr: errors, such as replies that failed verification.
    """

    returncode: int
    stdout: str
    stderr: str

    @property
    def received(self) -> str | None:
        """The code of the reply (``Access-Accept``...), or None when nothing arrived."""
        for line in self.stdout.splitlines():
            match = _RECEIVED.match(line)
            if match:
                return match["code"]
        return None

    def reply_attributes(self) -> dict[str, str]:
        """The attributes radclient printed for the reply, values as printed."""
        attributes: dict[str, str] = {}
        in_reply = False
        for line in self.stdout.splitlines():
            if _RECEIVED.match(line):
                in_reply = True
                continue
            match = _ATTRIBUTE.match(line)
            if in_reply and match:
                attributes[match["name"]] = match["value"]
            elif in_reply:
                break
        return attributes

    def describe(self) -> str:
        """Everything radclient printed, for assertion messages."""
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


@dataclass(frozen=True, slots=True)
class Radclient:
    """FreeRADIUS ``radclient``, run with a private, empty raddb folder.

    Attributes:
        exe: the program.
        raddb: an empty configuration folder (``-d``), so that neither /etc/freeradius nor its
            permissions (root:freerad 0640) matter.
        workdir: the working directory of each run.
    """

    exe: str
    raddb: Path
    workdir: Path

    async def run(
        self,
        port: int,
        command: str,
        secret: str,
        lines: Sequence[str],
        *,
        reply_wait: float = 2.0,
    ) -> RadclientRun:
        """Send one packet made of ``lines`` (``Name = value``) to 127.0.0.1:``port``.

        Args:
            port: the proxy's UDP port.
            command: ``auth`` or ``status``.
            secret: the shared secret.
            lines: the attributes, in radclient's input syntax.
            reply_wait: seconds radclient waits for the reply (``-t``).

        Returns:
            The exit status and output.
        """
        proc = await asyncio.create_subprocess_exec(
            self.exe,
            "-x",
            "-d",
            str(self.raddb),
            "-D",
            str(DICTIONARY_DIR),
            "-t",
            str(reply_wait),
            "-r",
            "1",
            f"127.0.0.1:{port}",
            command,
            secret,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.workdir,
        )
        text = "".join(f"{line}\n" for line in lines)
        try:
            async with asyncio.timeout(reply_wait * 3 + 5):
                stdout, stderr = await proc.communicate(text.encode())
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return RadclientRun(proc.returncode, stdout.decode(), stderr.decode())


@pytest.fixture
def radclient(tmp_path: Path) -> Radclient:
    """FreeRADIUS radclient with a private raddb folder; fails with an install hint if absent."""
    exe = shutil.which("radclient")
    if exe is None:
        pytest.fail(f"radclient not found on PATH: {INSTALL_HINT}")
    if not (DICTIONARY_DIR / "dictionary").is_file():
        pytest.fail(f"FreeRADIUS dictionaries missing from {DICTIONARY_DIR}: {INSTALL_HINT}")
    raddb = tmp_path / "raddb"
    raddb.mkdir()
    return Radclient(exe=exe, raddb=raddb, workdir=tmp_path)
