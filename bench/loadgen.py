"""RADIUS load generator: complete TOTP challenge logins against any RADIUS server.

One login is two round trips, as a VPN gateway does them:

1. Access-Request (Message-Authenticator, User-Name, User-Password) -> Access-Challenge with
   State;
2. Access-Request (Message-Authenticator, User-Name, User-Password = the current TOTP code,
   State) -> Access-Accept.

**SMS mode** (``--codes-port``, the ``*-sms`` scenarios): round one makes the server text a
code (to the Twilio fake, :mod:`bench.twilio_fake`); on the Access-Challenge the generator
fetches that code from the fake (``GET /codes/<number>?since=<round one's start>``, pipelined
on a few keep-alive connections per process by a small hand-made HTTP/1.1 client, a long
poll should the text still be on its way) and sends it in round two. The fetch is part of the
generator's CPU and of the login latency; its own latency is reported (``fetch p50/p99``).
A user may log in again as soon as its previous login finished, never twice at once.

Every reply is verified (Response Authenticator, RFC 2865 §3, and Message-Authenticator,
RFC 3579 §3.2) before it counts; a reply that does not verify is counted as ``bad_reply`` and
ignored, as a NAS would.

Why it is built this way:

* **Separate processes** (``multiprocessing``, spawn): the generator must not share an
  interpreter, a GIL or an event loop with what it measures. The machine has only two cores
  shared with the server, so each process is lean instead of numerous: uvloop, raw
  non-blocking UDP sockets read in batches by one reader callback, a per-login state object
  advanced from that callback (no task or coroutine per login), and packets assembled from
  per-user templates with the codec's primitives (:func:`codec.hide_password`, HMAC-MD5);
  a start-up self-check proves the fast path encodes exactly what :func:`codec.encode_request`
  encodes.
* **Users never reuse a (user, time step)**: a TOTP code is accepted once per token and step,
  so each process owns a disjoint slice of the users file, cycles through it in order, and
  starts a login for a user only if that user's last code was for an earlier step. When the
  slice runs out for the current step the process waits for the next step and counts
  ``starved`` ticks: the run needs more users for its rate.
* **Closed loop** (``--rate 0``): ``--concurrency`` logins always in flight, the maximum rate.
  **Open loop** (``--rate N``): logins start on a fixed schedule whatever the replies do, the
  way independent users arrive, so latency at a given load is not hidden by back-pressure;
  logins the schedule wanted but the in-flight cap refused are counted as ``shortfall``.
* **Bounded**: a run lasts ``--warmup`` + ``--duration`` seconds, then in-flight logins get one
  retransmission budget to finish, and the processes exit. Only what completes inside the
  measured window counts towards rates and latencies.

The CPU share of the server process (``--server-pid``) and of the generator processes comes
from ``/proc/<pid>/stat`` (utime + stime, every thread) over the measured window, in percent
of one core (this machine has two, so 200% is everything).

Usage::

    python -m bench.loadgen --host 127.0.0.1 --port 1812 --secret S --users-file users.csv \\
        --duration 20 --concurrency 256 --processes 1 [--rate 1500] [--server-pid PID]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import csv
import hmac
import json
import math
import multiprocessing
import os
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import uvloop

from mfa_radius.core import otp
from mfa_radius.radius import codec
from mfa_radius.radius.packet import AttrType, Code

_ACCESS_REQUEST = int(Code.ACCESS_REQUEST)
_ACCEPT = int(Code.ACCESS_ACCEPT)
_REJECT = int(Code.ACCESS_REJECT)
_CHALLENGE = int(Code.ACCESS_CHALLENGE)
_USER_NAME = int(AttrType.USER_NAME)
_USER_PASSWORD = int(AttrType.USER_PASSWORD)
_STATE = int(AttrType.STATE)
_MA = int(AttrType.MESSAGE_AUTHENTICATOR)
_MA_PLACEHOLDER = bytes((_MA, 18)) + bytes(16)
_PACK_HEAD = struct.Struct("!BBH").pack
_IDS_PER_SOCKET = 256
_TICK = 0.005
"""Seconds between scheduler ticks (open-loop starts, refills, timeout scan)."""
_SOCKET_BUFFER = 4 * 1024 * 1024
_TIME_STEP = 30
_CODE_CONNECTIONS = 4
"""Keep-alive connections per generator process to the Twilio fake (SMS mode)."""


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """What one generator run does (shared by every process).

    Attributes:
        host: the server address (loopback for this benchmark).
        port: the server's UDP port.
        secret: the shared secret.
        users_file: CSV of ``username,password,base32 secret``.
        duration: measured seconds.
        warmup: seconds run before measuring (caches, JIT-free warm paths, pools).
        concurrency: logins in flight at most, over all processes.
        rate: logins started per second over all processes (open loop); 0 for closed loop.
        processes: generator processes.
        timeout: seconds before a request is retransmitted.
        retries: retransmissions before a login counts as timed out.
        time_step: the TOTP step of the enrolled tokens (seconds).
        min_step: no code is used for a step before this one (to follow an earlier run
            against the same server without replaying its codes).
        codes_port: SMS mode when non-zero: round two sends the code the server texted,
            fetched from the Twilio fake (:mod:`bench.twilio_fake`) on this loopback TCP
            port, instead of a TOTP code; users then need a phone number and may log in
            again as soon as their previous login finished.
    """

    host: str
    port: int
    secret: bytes
    users_file: Path
    duration: float = 20.0
    warmup: float = 2.0
    concurrency: int = 256
    rate: float = 0.0
    processes: int = 1
    timeout: float = 2.0
    retries: int = 2
    time_step: int = _TIME_STEP
    min_step: int = 0
    codes_port: int = 0


@dataclass(slots=True)
class Counts:
    """Event counters of one process (summed over processes by the parent).

    ``*_window`` counters cover only the measured window; the others the whole run.
    """

    started: int = 0
    accepts: int = 0
    rejects_round1: int = 0
    rejects_round2: int = 0
    rechallenged: int = 0
    no_state: int = 0
    timeouts: int = 0
    retransmits: int = 0
    bad_replies: int = 0
    stale_replies: int = 0
    send_errors: int = 0
    starved_ticks: int = 0
    shortfall: int = 0
    unfinished: int = 0
    accepts_window: int = 0
    requests_window: int = 0
    replies_window: int = 0
    first_step: int = 0
    last_step: int = 0
    code_fetches: int = 0
    code_refetches: int = 0
    code_timeouts: int = 0
    code_errors: int = 0


@dataclass(slots=True)
class ProcessResult:
    """What one generator process sends back to the parent."""

    counts: Counts
    login_ms: array.array[float]
    round1_ms: array.array[float]
    round2_ms: array.array[float]
    cpu_seconds: float
    window_seconds: float
    users: int
    fetch_ms: array.array[float] = field(default_factory=lambda: array.array("d"))


@dataclass(slots=True)
class _User:
    """One enrolled user and the templates of its requests."""

    name_attr: bytes
    password: bytes
    secret: bytes
    phone: bytes = b""
    last_step: int = -1
    busy: bool = False


@dataclass(slots=True)
class _Login:
    """One login in flight, on one (socket, identifier) for both rounds."""

    user: _User
    sock: int
    ident: int
    started: float
    round: int = 1
    round_started: float = 0.0
    sent_at: float = 0.0
    authenticator: bytes = b""
    packet: bytes = b""
    tries: int = 0
    state: bytes | None = None
    fetching: bool = False
    fetch_started: float = 0.0
    texted_after_ns: int = 0


def read_users(path: Path) -> list[tuple[str, str, bytes, str]]:
    """Read ``username,password,base32 secret[,phone]`` lines (no header).

    The SMS scenarios' users have a phone (E.164) and no TOTP secret (an empty column).
    """
    out: list[tuple[str, str, bytes, str]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            if not row or row[0].startswith("#"):
                continue
            name, password, secret = row[0], row[1], row[2]
            phone = row[3] if len(row) > 3 else ""
            out.append(
                (
                    name,
                    password,
                    base64.b32decode(secret.upper() + "=" * (-len(secret) % 8)),
                    phone,
                )
            )
    return out


def encode_access_request(
    identifier: int,
    authenticator: bytes,
    name_attr: bytes,
    password: bytes,
    state: bytes | None,
    secret: bytes,
) -> bytes:
    """Encode an Access-Request from a precomputed User-Name attribute (the fast path).

    Same layout as :func:`codec.encode_request` with Message-Authenticator first, without its
    argument checks (the templates are valid by construction; :func:`self_check` proves the
    bytes are identical).
    """
    hidden = codec.hide_password(password, secret, authenticator)
    body = _MA_PLACEHOLDER + name_attr + bytes((_USER_PASSWORD, len(hidden) + 2)) + hidden
    if state is not None:
        body += bytes((_STATE, len(state) + 2)) + state
    head = _PACK_HEAD(_ACCESS_REQUEST, identifier, 20 + len(body))
    mac = hmac.digest(secret, head + authenticator + body, "md5")
    return head + authenticator + body[:2] + mac + body[18:]


def self_check(secret: bytes) -> None:
    """Fail fast when the fast path and the codec disagree on a request's bytes."""
    auth = bytes(range(16))
    name = b"bench-self-check"
    name_attr = bytes((_USER_NAME, len(name) + 2)) + name
    for state in (None, b"0123456789abcdef"):
        attrs: list[tuple[int, bytes]] = [
            (_USER_NAME, name),
            (_USER_PASSWORD, codec.hide_password(b"pw", secret, auth)),
        ]
        if state is not None:
            attrs.append((_STATE, state))
        want = codec.encode_request(Code.ACCESS_REQUEST, 7, auth, attrs, secret)
        got = encode_access_request(7, auth, name_attr, b"pw", state, secret)
        if want != got:
            raise RuntimeError("the fast request encoder disagrees with mfa_radius.radius.codec")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process, all threads (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _CodeConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to the Twilio fake, requests pipelined.

    A hand-made client rather than aiohttp's: one ``write`` per fetch and a few byte
    searches per answer, no task, future or header object per login. Answers come back in
    request order (HTTP/1.1 pipelining), so each is matched to the oldest waiting login.
    """

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: deque[_Login] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def fetch(self, login: _Login, wait: float) -> None:
        """Ask for the code texted to ``login``'s user since its round one began."""
        if self.transport is None:
            raise ConnectionError("the connection to the Twilio fake is closed")
        self.transport.write(
            b"GET /codes/%s?since=%d&wait=%.3f HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            % (login.user.phone, login.texted_after_ns, wait)
        )
        self.waiting.append(login)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            start = head.find(b"\r\ncontent-length:")
            length = 0
            if start >= 0:
                stop = head.find(b"\r\n", start + 2)
                length = int(head[start + 17 : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(buf) < total:
                return
            status = int(head[9:12])
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            if not self.waiting:
                self.generator.counts.code_errors += 1
                continue
            self.generator.on_code(self.waiting.popleft(), status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.generator.closed:
            return
        waiting, self.waiting = self.waiting, deque()
        for login in waiting:
            self.generator.on_code(login, 0, b"")


class Generator:
    """One process's share of the load: its users, sockets and logins in flight.

    Args:
        settings: the run's settings.
        users: this process's users (disjoint from every other process's).
        concurrency: this process's in-flight cap.
        rate: this process's logins per second (0: closed loop).
    """

    def __init__(
        self,
        settings: LoadSettings,
        users: Sequence[tuple[str, str, bytes, str]],
        *,
        concurrency: int,
        rate: float,
    ) -> None:
        self.settings = settings
        self.secret = settings.secret
        self.concurrency = max(1, concurrency)
        self.rate = rate
        self.sms = bool(settings.codes_port)
        if self.sms and not all(phone for *_, phone in users):
            raise ValueError("SMS mode needs a phone number for every user (users CSV column 4)")
        self.users: deque[_User] = deque(
            _User(
                name_attr=bytes((_USER_NAME, len(n.encode()) + 2)) + n.encode(),
                password=p.encode(),
                secret=s,
                phone=phone.encode("ascii"),
            )
            for n, p, s, phone in users
        )
        self.user_count = len(self.users)
        sockets = math.ceil(self.concurrency / _IDS_PER_SOCKET)
        self.socks: list[socket.socket] = []
        self.free: list[list[int]] = []
        self.slots: list[list[_Login | None]] = []
        for _ in range(sockets):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            sock.bind(("127.0.0.1", 0))
            sock.connect((settings.host, settings.port))
            sock.setblocking(False)
            self.socks.append(sock)
            self.free.append(list(range(_IDS_PER_SOCKET)))
            self.slots.append([None] * _IDS_PER_SOCKET)
        self.in_flight = 0
        self.counts = Counts()
        self.login_ms: array.array[float] = array.array("d")
        self.round1_ms: array.array[float] = array.array("d")
        self.round2_ms: array.array[float] = array.array("d")
        self.fetch_ms: array.array[float] = array.array("d")
        self.code_conns: list[_CodeConnection] = []
        self.next_conn = 0
        self.fetch_budget = settings.timeout * (settings.retries + 1)
        self.closed = False
        self.window_start = 0.0
        self.window_end = 0.0
        self.stopping = False
        self.starved_until_step = -1
        self.next_sock = 0

    # -- scheduling -----------------------------------------------------------------------

    def _step(self, now_wall: float) -> int:
        return int(now_wall) // self.settings.time_step

    def _take_user(self, step: int) -> _User | None:
        """The next user whose last code is for an earlier step, or None (starved)."""
        if step < self.settings.min_step or not self.users:
            return None
        user = self.users[0]
        # A texted code is good for its own challenge only: an SMS user may log in again as
        # soon as the last login finished (never twice at once: codes are looked up by number).
        if user.busy or (not self.sms and user.last_step >= step):
            return None
        self.users.rotate(-1)
        return user

    def _alloc(self) -> tuple[int, int] | None:
        for _ in range(len(self.socks)):
            index = self.next_sock
            self.next_sock = (index + 1) % len(self.socks)
            free = self.free[index]
            if free:
                return index, free.pop()
        return None

    def start_logins(self, wanted: int, now: float) -> int:
        """Start up to ``wanted`` logins now; return how many started."""
        started = 0
        step = self._step(time.time())
        if step < self.starved_until_step:
            return 0
        while started < wanted and self.in_flight < self.concurrency:
            user = self._take_user(step)
            if user is None:
                self.counts.starved_ticks += 1
                self.starved_until_step = step + 1
                break
            slot = self._alloc()
            if slot is None:
                break
            sock, ident = slot
            login = _Login(user=user, sock=sock, ident=ident, started=now)
            if self.sms:
                login.texted_after_ns = time.monotonic_ns()
            user.busy = True
            self.slots[sock][ident] = login
            self.in_flight += 1
            self.counts.started += 1
            self._send_round(login, None, now)
            started += 1
        return started

    def _send_round(
        self, login: _Login, state: bytes | None, now: float, code: bytes | None = None
    ) -> None:
        user = login.user
        if state is None:
            login.round = 1
            password = user.password
        elif code is not None:
            login.round = 2
            password = code
        else:
            login.round = 2
            step = self._step(time.time())
            user.last_step = step
            if not self.counts.first_step:
                self.counts.first_step = step
            self.counts.last_step = max(self.counts.last_step, step)
            password = otp.hotp(user.secret, step).encode("ascii")
        login.authenticator = os.urandom(16)
        login.packet = encode_access_request(
            login.ident, login.authenticator, user.name_attr, password, state, self.secret
        )
        login.round_started = now
        login.tries = 0
        self._transmit(login, now)

    def _transmit(self, login: _Login, now: float) -> None:
        login.sent_at = now
        login.tries += 1
        if self.window_start <= now < self.window_end:
            self.counts.requests_window += 1
        try:
            self.socks[login.sock].send(login.packet)
        except (BlockingIOError, ConnectionRefusedError, InterruptedError):
            self.counts.send_errors += 1

    def _finish(self, login: _Login) -> None:
        login.user.busy = False
        login.fetching = False
        self.slots[login.sock][login.ident] = None
        self.free[login.sock].append(login.ident)
        self.in_flight -= 1

    # -- replies --------------------------------------------------------------------------

    def on_readable(self, index: int) -> None:
        """Drain one socket and advance the logins its replies belong to."""
        sock = self.socks[index]
        slots = self.slots[index]
        secret = self.secret
        completed = 0
        while True:
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionRefusedError:
                self.counts.send_errors += 1
                continue
            now = time.perf_counter()
            if len(data) < 20:
                self.counts.bad_replies += 1
                continue
            login = slots[data[1]]
            if login is None:
                self.counts.stale_replies += 1
                continue
            auth = login.authenticator
            if not codec.verify_response_authenticator(data, auth, secret):
                # A late reply to an earlier request on this identifier, or a forgery.
                self.counts.stale_replies += 1
                continue
            if codec.verify_message_authenticator(data, secret, auth) is not True:
                self.counts.bad_replies += 1
                continue
            in_window = self.window_start <= now < self.window_end
            if in_window:
                self.counts.replies_window += 1
            code = data[0]
            round_ms = (now - login.round_started) * 1000.0
            if login.round == 1:
                if code == _CHALLENGE:
                    state = codec.decode(data).get(_STATE)
                    if state is None:
                        self.counts.no_state += 1
                        self._finish(login)
                        completed += 1
                        continue
                    if in_window:
                        self.round1_ms.append(round_ms)
                    if self.sms:
                        login.state = state
                        login.fetch_started = now
                        if not self._fetch(login, now):
                            self.counts.code_errors += 1
                            self._finish(login)
                            completed += 1
                        continue
                    self._send_round(login, state, now)
                    continue
                if code == _REJECT:
                    self.counts.rejects_round1 += 1
                else:
                    self.counts.bad_replies += 1
            elif code == _ACCEPT:
                self.counts.accepts += 1
                if in_window:
                    self.counts.accepts_window += 1
                    self.round2_ms.append(round_ms)
                    self.login_ms.append((now - login.started) * 1000.0)
            elif code == _CHALLENGE:
                self.counts.rechallenged += 1
            elif code == _REJECT:
                self.counts.rejects_round2 += 1
            else:
                self.counts.bad_replies += 1
            self._finish(login)
            completed += 1
        if completed and not self.rate and not self.stopping:
            self.start_logins(completed, time.perf_counter())

    # -- texted codes (SMS mode) ------------------------------------------------------------

    async def open_code_connections(self, count: int) -> None:
        """Open ``count`` keep-alive connections to the Twilio fake."""
        loop = asyncio.get_running_loop()
        for _ in range(count):
            _, conn = await loop.create_connection(
                lambda: _CodeConnection(self), "127.0.0.1", self.settings.codes_port
            )
            self.code_conns.append(conn)

    def _fetch(self, login: _Login, now: float) -> bool:
        """Ask the fake for ``login``'s code (long poll); False when no connection is left."""
        for _ in range(len(self.code_conns)):
            conn = self.code_conns[self.next_conn]
            self.next_conn = (self.next_conn + 1) % len(self.code_conns)
            if conn.transport is not None:
                remaining = self.fetch_budget - (now - login.fetch_started)
                conn.fetch(login, max(0.05, min(self.settings.timeout, remaining)))
                login.fetching = True
                return True
        return False

    def on_code(self, login: _Login, status: int, body: bytes) -> None:
        """The fake's answer for ``login``: send round two, poll again, or give up."""
        if not login.fetching or self.slots[login.sock][login.ident] is not login:
            return  # the login gave up meanwhile (its budget ran out)
        now = time.perf_counter()
        login.fetching = False
        if status == 200 and body.isdigit():
            self.counts.code_fetches += 1
            if self.window_start <= now < self.window_end:
                self.fetch_ms.append((now - login.fetch_started) * 1000.0)
            self._send_round(login, login.state, now, code=body)
            return
        if status == 404 and now - login.fetch_started < self.fetch_budget:
            self.counts.code_refetches += 1
            if self._fetch(login, now):
                return
        if status == 404:
            self.counts.code_timeouts += 1
            self.counts.timeouts += 1
        else:
            self.counts.code_errors += 1
        self._finish(login)
        if not self.rate and not self.stopping:
            self.start_logins(1, now)

    # -- timers ---------------------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """Retransmit overdue requests; give up on logins past their retries."""
        deadline = now - self.settings.timeout
        for slots in self.slots:
            for login in slots:
                if login is None:
                    continue
                if login.fetching:
                    # Waiting for a texted code: no retransmission, but a bounded wait.
                    if now - login.fetch_started > self.fetch_budget + 1.0:
                        self.counts.code_timeouts += 1
                        self.counts.timeouts += 1
                        self._finish(login)
                    continue
                if login.sent_at > deadline:
                    continue
                if login.tries > self.settings.retries:
                    self.counts.timeouts += 1
                    self._finish(login)
                else:
                    self.counts.retransmits += 1
                    self._transmit(login, now)

    async def run(self, start_at: float) -> ProcessResult:
        """Run from ``start_at`` (``time.perf_counter`` clock) for warmup + duration."""
        loop = asyncio.get_running_loop()
        for index, sock in enumerate(self.socks):
            loop.add_reader(sock.fileno(), self.on_readable, index)
        s = self.settings
        self.window_start = start_at + s.warmup
        self.window_end = self.window_start + s.duration
        drain_end = self.window_end + s.timeout * (s.retries + 1) + 0.5
        if self.sms:
            # The fetch is a second wait inside a login: allow for it in the drain.
            drain_end += self.fetch_budget + 1.0
            await self.open_code_connections(_CODE_CONNECTIONS)
        await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        cpu_start = cpu_end = 0.0
        measuring = False
        scheduled = 0
        last_scan = start_at
        while True:
            now = time.perf_counter()
            if not measuring and now >= self.window_start:
                cpu_start, measuring = cpu_seconds(), True
            if now >= self.window_end and not self.stopping:
                self.stopping = True
                cpu_end = cpu_seconds()
            if self.stopping and (self.in_flight == 0 or now >= drain_end):
                break
            if not self.stopping:
                if self.rate:
                    due = int((now - start_at) * self.rate) - scheduled
                    if due > 0:
                        got = self.start_logins(due, now)
                        scheduled += due
                        if now >= self.window_start:
                            self.counts.shortfall += due - got
                else:
                    self.start_logins(self.concurrency - self.in_flight, now)
            if now - last_scan >= 0.05:
                self.check_timeouts(now)
                last_scan = now
            await asyncio.sleep(_TICK)
        self.counts.unfinished = self.in_flight
        self.closed = True
        for sock in self.socks:
            loop.remove_reader(sock.fileno())
            sock.close()
        for conn in self.code_conns:
            if conn.transport is not None:
                conn.transport.close()
        return ProcessResult(
            counts=self.counts,
            login_ms=self.login_ms,
            round1_ms=self.round1_ms,
            round2_ms=self.round2_ms,
            cpu_seconds=cpu_end - cpu_start,
            window_seconds=s.duration,
            users=self.user_count,
            fetch_ms=self.fetch_ms,
        )


def _worker(settings: LoadSettings, index: int, conn: Connection) -> None:
    """Body of one generator process: load its users, report ready, run, send results."""
    try:
        users = read_users(settings.users_file)[index :: settings.processes]
        concurrency = math.ceil(settings.concurrency / settings.processes)
        rate = settings.rate / settings.processes
        self_check(settings.secret)
        generator = Generator(settings, users, concurrency=concurrency, rate=rate)
        conn.send(("ready", os.getpid()))
        start_at = conn.recv()
        result = uvloop.run(generator.run(float(start_at)))
        conn.send(("result", result))
    except Exception as exc:  # noqa: BLE001 (reported to the parent, which fails the run)
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


@dataclass(slots=True)
class RunReport:
    """The merged result of a run: what the benchmark table and JSON show."""

    mode: str
    offered_rate: float
    concurrency: int
    processes: int
    duration: float
    users: int
    logins_per_s: float
    packets_per_s: float
    requests_per_s: float
    replies_per_s: float
    login_p50_ms: float
    login_p99_ms: float
    round1_p50_ms: float
    round1_p99_ms: float
    round2_p50_ms: float
    round2_p99_ms: float
    server_cpu_pct: float | None
    server_main_thread_cpu_pct: float | None
    generator_cpu_pct: float
    other_cpu_pct: dict[str, float]
    counts: dict[str, int]
    errors: list[str] = field(default_factory=list)
    fetch_p50_ms: float = math.nan
    fetch_p99_ms: float = math.nan
    other_rates: dict[str, float] = field(default_factory=dict)
    """Per-second rates of ``run_load``'s ``rate_sources`` over the window (``texts``...)."""

    def ok(self) -> bool:
        """No reject, timeout, bad reply or unfinished login, and no process failed."""
        c = self.counts
        return not self.errors and not any(
            c[k]
            for k in (
                "rejects_round1",
                "rejects_round2",
                "rechallenged",
                "no_state",
                "timeouts",
                "bad_replies",
                "unfinished",
                "code_timeouts",
                "code_errors",
            )
        )


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def run_load(
    settings: LoadSettings,
    *,
    server_pid: int | None = None,
    other_pids: dict[str, int] | None = None,
    rate_sources: dict[str, Callable[[], float]] | None = None,
) -> RunReport:
    """Run the generator processes and merge their results.

    Args:
        settings: the run.
        server_pid: the server process whose CPU share to report.
        other_pids: more processes to report (``redis`` ...), by name.
        rate_sources: counters read at both edges of the measured window, reported per
            second by name (the Twilio fake's messages ...).

    Returns:
        The merged report.

    Raises:
        RuntimeError: a process failed to start or to report.
    """
    other_pids = other_pids or {}
    ctx = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    procs: list[multiprocessing.context.SpawnProcess] = []
    errors: list[str] = []
    try:
        for index in range(settings.processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(settings, index, child), daemon=True)
            proc.start()
            child.close()
            pipes.append(parent)
            procs.append(proc)
        for pipe in pipes:
            if not pipe.poll(60):
                raise RuntimeError("a generator process did not get ready within 60 s")
            kind, value = pipe.recv()
            if kind != "ready":
                raise RuntimeError(f"generator process failed: {value}")
        start_at = time.perf_counter() + 0.3
        for pipe in pipes:
            pipe.send(start_at)
        window_start = start_at + settings.warmup
        time.sleep(max(0.0, window_start - time.perf_counter()))
        watched: dict[str, int | str] = dict(other_pids)
        if server_pid is not None:
            watched["server"] = server_pid
            # The event loop's thread alone: the rest is worker threads (SQLite, argon2).
            watched["server_main_thread"] = f"{server_pid}/task/{server_pid}"
        sources = rate_sources or {}
        cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        counters_before = {name: read() for name, read in sources.items()}
        wall_before = time.perf_counter()
        time.sleep(max(0.0, window_start + settings.duration - time.perf_counter()))
        cpu_after = {name: cpu_seconds(pid) for name, pid in watched.items()}
        counters_after = {name: read() for name, read in sources.items()}
        wall = time.perf_counter() - wall_before
        results: list[ProcessResult] = []
        budget = settings.timeout * (settings.retries + 1) + 30.0
        for pipe in pipes:
            if not pipe.poll(budget):
                raise RuntimeError("a generator process did not report")
            kind, value = pipe.recv()
            if kind == "result":
                results.append(value)
            else:
                errors.append(str(value))
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        for pipe in pipes:
            pipe.close()
    shares = {name: 100.0 * (cpu_after[name] - cpu_before[name]) / wall for name in watched}
    rates = {name: (counters_after[name] - counters_before[name]) / wall for name in sources}
    return merge(settings, results, shares, errors, rates)


def merge(
    settings: LoadSettings,
    results: list[ProcessResult],
    shares: dict[str, float],
    errors: list[str],
    rates: dict[str, float] | None = None,
) -> RunReport:
    """Sum the counters and pool the latency samples of every process."""
    total = Counts()
    logins: list[float] = []
    fetches: list[float] = []
    round1: list[float] = []
    round2: list[float] = []
    generator_cpu = 0.0
    users = 0
    for r in results:
        for key, value in asdict(r.counts).items():
            if key == "first_step":
                if value and (not total.first_step or value < total.first_step):
                    total.first_step = value
            elif key == "last_step":
                total.last_step = max(total.last_step, value)
            else:
                setattr(total, key, getattr(total, key) + value)
        logins.extend(r.login_ms)
        round1.extend(r.round1_ms)
        round2.extend(r.round2_ms)
        fetches.extend(r.fetch_ms)
        generator_cpu += r.cpu_seconds
        users += r.users
    logins.sort()
    round1.sort()
    round2.sort()
    fetches.sort()
    d = settings.duration
    server = shares.pop("server", None)
    main_thread = shares.pop("server_main_thread", None)
    return RunReport(
        mode="open" if settings.rate else "closed",
        offered_rate=settings.rate,
        concurrency=settings.concurrency,
        processes=settings.processes,
        duration=d,
        users=users,
        logins_per_s=total.accepts_window / d,
        packets_per_s=(total.requests_window + total.replies_window) / d,
        requests_per_s=total.requests_window / d,
        replies_per_s=total.replies_window / d,
        login_p50_ms=percentile(logins, 50),
        login_p99_ms=percentile(logins, 99),
        round1_p50_ms=percentile(round1, 50),
        round1_p99_ms=percentile(round1, 99),
        round2_p50_ms=percentile(round2, 50),
        round2_p99_ms=percentile(round2, 99),
        server_cpu_pct=server,
        server_main_thread_cpu_pct=main_thread,
        generator_cpu_pct=100.0 * generator_cpu / d,
        other_cpu_pct=shares,
        counts=asdict(total),
        errors=errors,
        fetch_p50_ms=percentile(fetches, 50),
        fetch_p99_ms=percentile(fetches, 99),
        other_rates=dict(rates or {}),
    )


TABLE_HEADER = (
    "| scenario | load | logins/s | packets/s | login p50/p99 ms | round1 p50/p99 ms "
    "| round2 p50/p99 ms | server CPU % (loop thread) | generator CPU % | other CPU % "
    "| accepts | rejects | timeouts | retransmits |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
)
"""Markdown header matching :func:`table_row`."""


def table_row(scenario: str, report: RunReport) -> str:
    """One markdown table row for a run."""
    c = report.counts
    load = (
        f"open {report.offered_rate:g}/s"
        if report.mode == "open"
        else f"max (closed, {report.concurrency} in flight)"
    )
    other = ", ".join(f"{k} {v:.0f}" for k, v in report.other_cpu_pct.items()) or "-"
    if report.other_rates:
        other += "; " + ", ".join(f"{k} {v:,.0f}/s" for k, v in report.other_rates.items())
    server = "-"
    if report.server_cpu_pct is not None:
        server = f"{report.server_cpu_pct:.0f} ({report.server_main_thread_cpu_pct or 0:.0f})"
    rejects = c["rejects_round1"] + c["rejects_round2"] + c["rechallenged"] + c["no_state"]
    return (
        f"| {scenario} | {load} | {report.logins_per_s:,.0f} | {report.packets_per_s:,.0f} "
        f"| {report.login_p50_ms:.1f} / {report.login_p99_ms:.1f} "
        f"| {report.round1_p50_ms:.1f} / {report.round1_p99_ms:.1f} "
        f"| {report.round2_p50_ms:.1f} / {report.round2_p99_ms:.1f} "
        f"| {server} | {report.generator_cpu_pct:.0f} | {other} | {c['accepts']:,} "
        f"| {rejects} | {c['timeouts']} | {c['retransmits']} |"
    )


def report_json(report: RunReport) -> dict[str, Any]:
    """The report as JSON-ready data (NaN latencies become null)."""
    data = asdict(report)
    for key, value in data.items():
        if isinstance(value, float) and math.isnan(value):
            data[key] = None
    return data


def _pid_pair(text: str) -> tuple[str, int]:
    name, _, pid = text.partition("=")
    if not pid:
        raise argparse.ArgumentTypeError("expected NAME=PID")
    return name, int(pid)


def main(argv: list[str] | None = None, *, emit: Callable[[str], None] = print) -> int:
    """Command line entry point; exits 1 when a login failed or a process broke."""
    parser = argparse.ArgumentParser(description="RADIUS TOTP challenge-login load generator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True, help="shared secret")
    parser.add_argument("--users-file", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--concurrency", type=int, default=256, help="logins in flight at most")
    parser.add_argument("--rate", type=float, default=0.0, help="logins/s (0: closed loop)")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per try")
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--min-step", type=int, default=0, help="first TOTP step to use")
    parser.add_argument(
        "--codes-port", type=int, default=0, help="SMS mode: the Twilio fake's TCP port"
    )
    parser.add_argument("--server-pid", type=int, help="report this process's CPU share")
    parser.add_argument(
        "--watch-pid", type=_pid_pair, action="append", default=[], help="NAME=PID, repeatable"
    )
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost"):
        parser.error("this benchmark only targets loopback (127.0.0.1)")
    settings = LoadSettings(
        host="127.0.0.1",
        port=args.port,
        secret=args.secret.encode(),
        users_file=args.users_file,
        duration=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        rate=args.rate,
        processes=args.processes,
        timeout=args.timeout,
        retries=args.retries,
        min_step=args.min_step,
        codes_port=args.codes_port,
    )
    report = run_load(settings, server_pid=args.server_pid, other_pids=dict(args.watch_pid))
    emit(TABLE_HEADER)
    emit(table_row(f"{args.host}:{args.port}", report))
    emit(json.dumps(report.counts))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report_json(report), indent=2), encoding="utf-8")
    for error in report.errors:
        print(error, file=sys.stderr)
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
