"""A throw-away FreeRADIUS 3 server on loopback: the real home server of the upstream tests.

:class:`FreeRadiusServer` writes a small self-contained raddb (no file of /etc/freeradius is
read), runs ``freeradius -f -X -d <dir>`` and waits for "Ready to process requests". A missing
binary fails the run with an install hint (it is not a skip). Outages are produced for real
with :meth:`FreeRadiusServer.stop` and :meth:`FreeRadiusServer.restart` (same port).

What the raddb does (FreeRADIUS 3.2.1 facts found while writing it):

* Users in ``users`` (rlm_files, PAP via rlm_pap): ``alice`` (Class, Filter-Id, a Cisco-AVPair
  VSA and Session-Timeout on accept), ``bob``, and ``dave``, whose Access-Accept carries a
  Reply-Message echoing the forwarded request attributes. Every Access-Reject says
  "Access denied" (``Post-Auth-Type REJECT``).
* ``carol`` gets the server's own challenge from unlang in ``authorize``: without State, an
  Access-Challenge with Reply-Message "Enter PIN" and a State (``control:Response-Packet-Type
  := Access-Challenge`` plus ``handled``; "handled", "ok" and "reject" are ``always``
  module instances, which must be declared); with that State and PIN "4321", an accept.
* ``security { status_server = yes }`` makes the auth port answer Status-Server (RFC 5997)
  with an Access-Accept; no ``status`` virtual server is needed. ``reject_delay = 0`` removes
  the default one-second delay of rejects.
* FreeRADIUS 3.2.1 does **not** put Message-Authenticator in its Access-Accept, -Reject,
  -Challenge or Status-Server replies (only EAP replies get one); 3.2.5 added that as the
  BlastRADIUS fix. ``update reply { &Message-Authenticator := 0x00 }`` makes it sign a reply
  (the value is computed on encoding), which ``sign_replies=True`` adds to every reply path:
  ``post-auth``, ``Post-Auth-Type REJECT``, carol's challenge and ``Autz-Type Status-Server``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.ports import LOOPBACK, free_udp_port
from tests.support.process import ServerProcess

INSTALL_HINT = "freeradius not found: apt-get install freeradius"
DICTIONARY_DIR = Path("/usr/share/freeradius")
MODULE_DIR = Path("/usr/lib/freeradius")
READY = "Ready to process requests"

CAROL_STATE = b"pin-state-1"
"""The State of carol's challenge."""

USERS = """\
alice	Cleartext-Password := "alice-pw"
	Class = "vpn-class",
	Filter-Id = "staff",
	Cisco-AVPair = "shell:priv-lvl=15",
	Session-Timeout = 3600

bob	Cleartext-Password := "bob-pw"

carol	Cleartext-Password := "carol-pw"

dave	Cleartext-Password := "dave-pw"
"""

_SIGN = "&Message-Authenticator := 0x00"
_SIGN_BLOCK = "update reply {\n\t\t\t\t&Message-Authenticator := 0x00\n\t\t\t}"

_RADIUSD_CONF = """\
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
raddbdir = {dir}
confdir = ${{raddbdir}}
modconfdir = ${{confdir}}
logdir = ${{raddbdir}}/log
radacctdir = ${{logdir}}
run_dir = ${{raddbdir}}/run
db_dir = ${{raddbdir}}
libdir = {libdir}
pidfile = ${{run_dir}}/radiusd.pid
name = radiusd
max_request_time = 5
cleanup_delay = 2
max_requests = 1024
hostname_lookups = no
log {{
	destination = stdout
	colourise = no
	auth = no
}}
security {{
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}}
proxy_requests = no
thread pool {{
	start_servers = 1
	max_servers = 4
	min_spare_servers = 1
	max_spare_servers = 2
	max_requests_per_server = 0
}}
client loopback {{
	ipaddr = {host}
	secret = "{secret}"
	require_message_authenticator = yes
}}
modules {{
	pap {{
	}}
	files {{
		filename = ${{confdir}}/users
	}}
	always reject {{
		rcode = reject
	}}
	always handled {{
		rcode = handled
	}}
	always ok {{
		rcode = ok
	}}
}}
server default {{
	listen {{
		type = auth
		ipaddr = {host}
		port = {port}
	}}
	authorize {{
		Autz-Type Status-Server {{
			{sign_block}
			ok
		}}
		if (&User-Name == "carol") {{
			if (!&State) {{
				update reply {{
					&Reply-Message := "Enter PIN"
					&State := 0x{carol_state}
					{sign}
				}}
				update control {{
					&Response-Packet-Type := Access-Challenge
				}}
				handled
			}}
			elsif (&State == 0x{carol_state} && &User-Password == "4321") {{
				update control {{
					&Auth-Type := Accept
				}}
				ok
			}}
			else {{
				reject
			}}
		}}
		if (&User-Name == "dave") {{
			update reply {{
				&Reply-Message := "nas-id=%{{NAS-Identifier}} calling=%{{Calling-Station-Id}} \
port=%{{NAS-Port}} called=%{{Called-Station-Id}} proxy-state=%{{Proxy-State}}"
			}}
		}}
		files
		pap
	}}
	authenticate {{
		Auth-Type PAP {{
			pap
		}}
	}}
	post-auth {{
		{sign_block}
		Post-Auth-Type REJECT {{
			update reply {{
				&Reply-Message := "Access denied"
				{sign}
			}}
		}}
	}}
}}
"""


class FreeRadiusServer(ServerProcess):
    """One ``freeradius -X`` process serving authentication on 127.0.0.1.

    Args:
        directory: where the raddb, the log and the pid file go.
        secret: the shared secret of the 127.0.0.1 client (printable ASCII, no quotes).
        sign_replies: put a Message-Authenticator in every reply (see the module docstring:
            FreeRADIUS 3.2.1 does not by default).
        port: the UDP port; a free one when None.
    """

    def __init__(
        self,
        directory: Path,
        *,
        secret: str = "freeradius-test-secret",  # noqa: S107 (a throw-away test secret)
        sign_replies: bool = True,
        port: int | None = None,
    ) -> None:
        exe = shutil.which("freeradius") or shutil.which("freeradius", path="/usr/sbin")
        if exe is None:
            pytest.fail(INSTALL_HINT)
        if not (DICTIONARY_DIR / "dictionary").is_file() or not MODULE_DIR.is_dir():
            pytest.fail(
                f"FreeRADIUS files missing from {DICTIONARY_DIR} or {MODULE_DIR}: {INSTALL_HINT}"
            )
        if not secret.isprintable() or '"' in secret or "\\" in secret:
            raise ValueError("use a printable secret without quotes or backslashes")
        self._exe = exe
        self.directory = directory
        self.host = LOOPBACK
        self.port = free_udp_port() if port is None else port
        self.secret = secret
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_raddb(sign_replies)

    @property
    def secret_bytes(self) -> bytes:
        """The shared secret as the codec wants it."""
        return self.secret.encode()

    @property
    def log_path(self) -> Path:
        """The ``-X`` debug output of the current (or last) run."""
        return self.directory / "log" / "radiusd.out"

    @property
    def running(self) -> bool:
        """True while the process is up."""
        return self._proc is not None and self._proc.poll() is None

    def _write_raddb(self, sign_replies: bool) -> None:
        (self.directory / "log").mkdir(parents=True, exist_ok=True)
        (self.directory / "run").mkdir(exist_ok=True)
        conf = _RADIUSD_CONF.format(
            dir=self.directory,
            libdir=MODULE_DIR,
            host=self.host,
            port=self.port,
            secret=self.secret,
            sign=_SIGN if sign_replies else "",
            sign_block=_SIGN_BLOCK if sign_replies else "",
            carol_state=CAROL_STATE.hex(),
        )
        (self.directory / "radiusd.conf").write_text(conf)
        (self.directory / "users").write_text(USERS)

    def log_text(self) -> str:
        """The debug output so far (it shows passwords: test data only)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def start(self, deadline_s: float = 10.0) -> None:
        """Start the server and wait until it logs that it is ready."""
        if self.running:
            raise RuntimeError("freeradius already running")
        with self.log_path.open("wb") as out:
            self._proc = subprocess.Popen(
                [self._exe, "-f", "-X", "-d", str(self.directory), "-D", str(DICTIONARY_DIR)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + deadline_s
        while READY not in self.log_text():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                pytest.fail(f"freeradius exited with status {code}:\n{self.log_text()[-3000:]}")
            if time.monotonic() >= deadline:
                self.stop()
                pytest.fail(
                    f"freeradius not ready within {deadline_s} s:\n{self.log_text()[-3000:]}"
                )
            time.sleep(0.02)
