"""A throw-away redis-server process on loopback, for tests that need the real thing.

Redis is a hard dependency of a cluster, so the tests run the Debian ``redis-server`` binary
instead of a fake: a missing binary fails the run with an install hint (it is not a skip).
The server keeps nothing on disk (``--save "" --appendonly no``) and listens on 127.0.0.1 and
on a Unix socket in its own directory; with ``tls=True`` it also serves TLS on a second port
with a certificate for 127.0.0.1 signed by a throw-away CA. Tests produce outages for real with
:meth:`stop`, :meth:`restart` (same port) and :meth:`pause` (a hung server).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import LOOPBACK, free_tcp_port
from tests.support.process import ServerProcess

INSTALL_HINT = "redis-server not found: apt-get install redis-server"


def write_test_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """Write a one-day CA and a server certificate for 127.0.0.1; return (ca, cert, key) paths."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mfa-radius test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address(LOOPBACK))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _log_tail(log_path: Path | None) -> str:
    if log_path is None or not log_path.exists():
        return ""
    return "\n" + log_path.read_text(errors="replace")[-2000:]


def wait_for_ping(
    host: str,
    port: int,
    deadline_s: float,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Block until a RESP PING on ``host:port`` gets an answer, or fail the test.

    A server with ``requirepass`` answers ``-NOAUTH``, which also proves it is serving. When
    ``process`` is given, its early exit (port taken, bad flag) fails at once; the failure
    message ends with the tail of ``log_path``.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                if sock.recv(64)[:1] in (b"+", b"-"):
                    return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            pytest.fail(
                f"redis-server exited with status {process.returncode} before answering"
                + _log_tail(log_path)
            )
        if time.monotonic() >= deadline:
            pytest.fail(
                f"redis-server on {host}:{port} did not answer within {deadline_s} s"
                + _log_tail(log_path)
            )
        time.sleep(0.02)


class RedisServer(ServerProcess):
    """One redis-server subprocess bound to 127.0.0.1 on a free port.

    Args:
        directory: where the server runs (its log and Unix socket live there).
        password: sets ``requirepass`` when given.
        tls: also serve TLS on :attr:`tls_port`; the CA that signed the server certificate is
            :attr:`ca_file`.
    """

    def __init__(self, directory: Path, *, password: str | None = None, tls: bool = False) -> None:
        self._exe = shutil.which("redis-server")
        if self._exe is None:
            pytest.fail(INSTALL_HINT)
        self._dir = directory
        self._password = password
        self.host = LOOPBACK
        self.port = free_tcp_port()
        self.tls_port: int | None = None
        self.ca_file: Path | None = None
        self._tls_files: tuple[Path, Path] | None = None
        if tls:
            self.ca_file, cert, key = write_test_certificates(directory)
            self._tls_files = (cert, key)
            self.tls_port = free_tcp_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """A redis:// URL for the server, without credentials."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def unix_path(self) -> Path:
        """The server's Unix socket."""
        return self._dir / "redis.sock"

    @property
    def log_path(self) -> Path:
        """The server's log file (read it when a start fails)."""
        return self._dir / "redis.log"

    def start(self) -> None:
        """Start the server on its port and wait until it answers (5 s deadline)."""
        if self._proc is not None:
            raise RuntimeError("redis-server already running")
        assert self._exe is not None
        argv = [
            self._exe,
            "--bind", self.host,
            "--port", str(self.port),
            "--unixsocket", str(self.unix_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        if self._password is not None:
            argv += ["--requirepass", self._password]
        if self._tls_files is not None:
            argv += [
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", str(self._tls_files[0]),
                "--tls-key-file", str(self._tls_files[1]),
                "--tls-ca-cert-file", str(self.ca_file),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        try:
            wait_for_ping(
                self.host, self.port, deadline_s=5.0, process=self._proc, log_path=self.log_path
            )
        except BaseException:
            self.stop()
            raise
