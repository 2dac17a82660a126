"""A throw-away FreeRADIUS 3 on loopback: the upstream primary of the ``*-upstream`` scenarios.

:func:`freeradius_server` writes a small self-contained raddb into the benchmark's working
folder (no file of /etc/freeradius is read), runs ``freeradius -f -d <dir>`` in the foreground
and waits until it answers a signed Status-Server. It is a production-like run, not ``-X``:
debug output (every attribute of every request) would cost more CPU than the work itself.
Logging goes to ``<dir>/log/radius.log`` (start-up, errors; no per-request auth lines).

What the raddb does:

* Listens for authentication on 127.0.0.1:<port>, one client (127.0.0.1) with
  ``require_message_authenticator = yes``.
* Accepts every user whose User-Password is :data:`PASSWORD`: ``authorize`` sets
  ``control:Cleartext-Password`` and calls ``pap``, so no users file is read. The Access-Accept
  carries ``Class = "bench-class"`` (:data:`REPLY_CLASS`), which the proxy passes on.
* Signs every reply with Message-Authenticator (``update reply { &Message-Authenticator :=
  0x00 }`` on the Accept, Reject and Status-Server paths; FreeRADIUS 3.2.1 does not sign them
  otherwise), so the proxy can keep ``require_message_authenticator = true``.
* ``reject_delay = 0`` and ``status_server = yes`` (RFC 5997: also the readiness probe).
* A fixed pool of :data:`THREADS` worker threads (plus FreeRADIUS's own listener thread): PAP
  against a cleartext password is a few microseconds of work, so more threads than the
  machine's two cores would only add context switches, while a fixed size keeps thread
  creation and reaping out of the measured window.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mfa_radius.radius import codec
from mfa_radius.radius.packet import Code

INSTALL_HINT = "freeradius not found: apt-get install freeradius"
DICTIONARY_DIR = Path("/usr/share/freeradius")
MODULE_DIR = Path("/usr/lib/freeradius")
PASSWORD = "bench-password"
"""Every user's password as FreeRADIUS checks it (the users CSV must carry the same)."""
REPLY_CLASS = "bench-class"
SECRET = "bench-freeradius-secret-0123456789"  # a loopback benchmark's home server secret
THREADS = 4
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

_RADIUSD_CONF = """\
# Written by bench/freeradius.py: a throw-away benchmark home server.
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
max_requests = 65536
hostname_lookups = no
log {{
	destination = files
	file = ${{logdir}}/radius.log
	colourise = no
	stripped_names = no
	auth = no
	auth_badpass = no
	auth_goodpass = no
}}
security {{
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}}
proxy_requests = no
thread pool {{
	start_servers = {threads}
	max_servers = {threads}
	min_spare_servers = 1
	max_spare_servers = {threads}
	max_requests_per_server = 0
	max_queue_size = 65536
}}
client bench {{
	ipaddr = {host}
	secret = "{secret}"
	require_message_authenticator = yes
}}
modules {{
	pap {{
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
			update reply {{
				&Message-Authenticator := 0x00
			}}
			ok
		}}
		update control {{
			&Cleartext-Password := "{password}"
		}}
		pap
	}}
	authenticate {{
		Auth-Type PAP {{
			pap
		}}
	}}
	post-auth {{
		update reply {{
			&Class := "{reply_class}"
			&Message-Authenticator := 0x00
		}}
		Post-Auth-Type REJECT {{
			update reply {{
				&Message-Authenticator := 0x00
			}}
		}}
	}}
}}
"""


@dataclass(frozen=True, slots=True)
class FreeRadius:
    """A running benchmark FreeRADIUS: where it listens, its secret and its process id."""

    host: str
    port: int
    secret: str
    pid: int
    log_path: Path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_raddb(directory: Path, *, port: int, secret: str = SECRET) -> None:
    """Write ``radiusd.conf`` (everything in one file) and the log and run folders."""
    if not secret.isprintable() or '"' in secret or "\\" in secret:
        raise ValueError("use a printable secret without quotes or backslashes")
    # FreeRADIUS refuses a world-writable configuration directory.
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    (directory / "log").mkdir(exist_ok=True)
    (directory / "run").mkdir(exist_ok=True)
    conf = _RADIUSD_CONF.format(
        dir=directory,
        libdir=MODULE_DIR,
        host="127.0.0.1",
        port=port,
        secret=secret,
        threads=THREADS,
        password=PASSWORD,
        reply_class=REPLY_CLASS,
    )
    (directory / "radiusd.conf").write_text(conf, encoding="utf-8")


def status_server_answers(port: int, secret: str) -> bool:
    """Send one signed Status-Server and say whether a verified answer came back."""
    authenticator = os.urandom(16)
    request = codec.encode_request(Code.STATUS_SERVER, 1, authenticator, [], secret.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            reply = sock.recv(4096)
        except OSError:
            return False
    return codec.verify_response_authenticator(reply, authenticator, secret.encode())


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@contextlib.contextmanager
def freeradius_server(directory: Path) -> Iterator[FreeRadius]:
    """Run a benchmark FreeRADIUS from ``directory`` (rewritten) until the block ends.

    Raises:
        RuntimeError: FreeRADIUS is not installed, exited, or did not answer in time.
    """
    exe = shutil.which("freeradius") or shutil.which("freeradius", path="/usr/sbin")
    if exe is None or not (DICTIONARY_DIR / "dictionary").is_file() or not MODULE_DIR.is_dir():
        raise RuntimeError(INSTALL_HINT)
    port = _free_udp_port()
    write_raddb(directory, port=port)
    log_path = directory / "log" / "radius.log"
    out_path = directory / "log" / "radiusd.out"
    log_path.write_bytes(b"")
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "-f", "-d", str(directory), "-D", str(DICTIONARY_DIR)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not status_server_answers(port, SECRET):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"freeradius exited with status {proc.returncode}:\n"
                    f"{_tail(out_path)}{_tail(log_path)}"
                )
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"freeradius did not answer within {START_TIMEOUT:.0f} s:\n{_tail(log_path)}"
                )
            time.sleep(0.05)
        yield FreeRadius("127.0.0.1", port, SECRET, proc.pid, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
