"""A minimal Twilio REST API stand-in for the ``*-sms`` benchmark scenarios (own process).

The proxy texts codes through the real twilio SDK; its ``[twilio] api_base_url`` points here.
This process (aiohttp on uvloop, 127.0.0.1 only) serves:

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form ``To``, ``From``, ``Body``):
  HTTP Basic auth must carry the account SID and auth token given on the command line
  (401 with Twilio's error 20003 otherwise). The 6-digit code in ``Body`` is recorded as the
  latest code of ``To`` with the time it arrived (``time.monotonic_ns``: CLOCK_MONOTONIC,
  the same clock in every process of the machine), and the answer is a Twilio-shaped
  ``201`` JSON message (``sid`` ``SM...``, ``status`` ``queued``).
* ``GET /codes/{E.164 number}?since=NS&wait=S``: the code texted to that number at or after
  ``since`` (monotonic nanoseconds; a code from an earlier login of the same user is never
  returned), waiting up to ``wait`` seconds (long poll, at most :data:`MAX_WAIT`) for it to
  arrive; ``200`` with the code as the body, or ``404`` when none came in time. A fetched code
  is forgotten (one login, one code; also keeps memory bounded).
* ``GET /stats``: message, fetch and error counters as JSON (the runner samples them at the
  edges of the measured window for messages/s).

No access log, no per-request allocation beyond aiohttp's own: the fake must cost little
next to the proxy it serves, and its CPU share is reported separately ("other CPU").

It stops by itself: on SIGTERM/SIGINT, when its parent process goes away, or after
``--lifetime`` seconds, whichever comes first.

Usage (the runner does this)::

    python -m bench.twilio_fake --account-sid AC... --auth-token-file twilio.token \\
        --port-file twilio.port [--port 0] [--lifetime 3600]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac
import os
import re
import secrets
import signal
import socket
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import uvloop
from aiohttp import web

API_VERSION = "2010-04-01"
HOST = "127.0.0.1"
MAX_WAIT = 10.0
"""Longest long poll of ``GET /codes/...`` (seconds)."""
_CODE = re.compile(r"(?<!\d)\d{6}(?!\d)")


@dataclass(slots=True)
class Stats:
    """What the fake counted since it started."""

    messages: int = 0
    unauthorized: int = 0
    bad_requests: int = 0
    messages_without_code: int = 0
    fetches: int = 0
    fetch_waits: int = 0
    fetch_misses: int = 0


class FakeTwilio:
    """The fake's state: latest code per number, waiters, counters.

    Args:
        account_sid: the only account it accepts.
        auth_token: that account's auth token.
    """

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        credentials = f"{account_sid}:{auth_token}".encode()
        self._authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        self.codes: dict[str, tuple[int, str]] = {}
        self.waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.stats = Stats()

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self.message)
        app.router.add_get("/codes/{number}", self.code)
        app.router.add_get("/stats", self.stats_json)
        return app

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        more = f"https://www.twilio.com/docs/errors/{code}"
        body = {"code": code, "message": message, "more_info": more, "status": status}
        return web.json_response(body, status=status)

    async def message(self, request: web.Request) -> web.Response:
        """``POST .../Messages.json``: record the code, answer a queued message."""
        account_sid = request.match_info["account_sid"]
        given = request.headers.get("Authorization", "")
        if account_sid != self.account_sid or not hmac.compare_digest(
            given.encode(), self._authorization.encode()
        ):
            self.stats.unauthorized += 1
            return self._error(401, 20003, "Authenticate")
        form = await request.post()
        to, sender, body = form.get("To"), form.get("From"), form.get("Body")
        if not (isinstance(to, str) and isinstance(sender, str) and isinstance(body, str)):
            self.stats.bad_requests += 1
            return self._error(400, 21604, "A 'To', 'From' and 'Body' are required.")
        found = _CODE.search(body)
        if found is None:
            self.stats.messages_without_code += 1
        else:
            self.codes[to] = (time.monotonic_ns(), found.group(0))
            for waiter in self.waiters.pop(to, ()):
                if not waiter.done():
                    waiter.set_result(None)
        self.stats.messages += 1
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        payload: dict[str, object] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "to": to,
            "from": sender,
            "body": body,
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": "1",
            "num_media": "0",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "messaging_service_sid": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {},
        }
        return web.json_response(payload, status=201)

    async def code(self, request: web.Request) -> web.Response:
        """``GET /codes/{number}``: the code texted at or after ``since``, long-polled."""
        number = request.match_info["number"]
        query = request.rel_url.query
        try:
            since = int(query.get("since", "0"))
            wait = min(max(float(query.get("wait", "0")), 0.0), MAX_WAIT)
        except ValueError:
            self.stats.bad_requests += 1
            return web.Response(status=400, text="bad since or wait")
        self.stats.fetches += 1
        entry = self.codes.get(number)
        if (entry is None or entry[0] < since) and wait > 0:
            self.stats.fetch_waits += 1
            deadline = time.monotonic() + wait
            while entry is None or entry[0] < since:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self.waiters.setdefault(number, []).append(waiter)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, remaining)
                entry = self.codes.get(number)
            pending = self.waiters.get(number)
            if pending is not None:
                pending[:] = [w for w in pending if not w.done()]
                if not pending:
                    del self.waiters[number]
        if entry is None or entry[0] < since:
            self.stats.fetch_misses += 1
            return web.Response(status=404, text="no code yet")
        del self.codes[number]
        return web.Response(text=entry[1])

    async def stats_json(self, request: web.Request) -> web.Response:
        """``GET /stats``: the counters."""
        return web.json_response(asdict(self.stats))


async def serve(
    fake: FakeTwilio, *, port: int, port_file: Path | None, lifetime: float, parent: int
) -> None:
    """Serve until a signal, the parent's exit or the end of ``lifetime``."""
    runner = web.AppRunner(fake.app(), access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    bound = int(sock.getsockname()[1])
    site = web.SockSite(runner, sock, backlog=1024)
    await site.start()
    if port_file is not None:
        partial = port_file.with_suffix(".tmp")
        partial.write_text(f"{bound}\n", encoding="ascii")
        partial.replace(port_file)  # atomic: the runner never reads half a number
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + lifetime
    try:
        while not stop.is_set() and time.monotonic() < deadline and os.getppid() == parent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="A local Twilio Messages API for the benchmark.")
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token-file", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="exit after seconds")
    args = parser.parse_args(argv)
    token = args.auth_token_file.read_text(encoding="utf-8").strip()
    fake = FakeTwilio(args.account_sid, token)
    uvloop.run(
        serve(
            fake,
            port=args.port,
            port_file=args.port_file,
            lifetime=args.lifetime,
            parent=os.getppid(),
        )
    )


if __name__ == "__main__":
    main()
