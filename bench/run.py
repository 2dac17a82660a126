"""Benchmark runner: a real proxy process, its users and the load generator, start to stop.

One scenario is a store (``memory``: in-process; ``redis``: a private redis-server on a free
loopback port) and a primary (``none``: the NAS checked the password; ``local``: argon2id in
the proxy; ``upstream``: a private FreeRADIUS on a free loopback port checks it,
:mod:`bench.freeradius`), or ``sms``: primary ``none`` and the second factor a code the
proxy texts through the real twilio SDK to a local Twilio fake (:mod:`bench.twilio_fake`, its
own process, whose CPU share and messages/s are reported); the generator fetches each
texted code from the fake and sends it in round two. The send limits of ``[limits]`` are
raised far above the production defaults in that scenario (no cool-down, a million sends
per user and number an hour), or they, not the proxy, would set the rate. The runner

1. writes a proxy configuration listening on 127.0.0.1 (a free port), with the production
   defaults that cost CPU left on: the JSON ``request_finished`` audit line per request at
   level ``info`` (to a file, as a service manager would), Message-Authenticator required,
   the SQLite enrolment lookup on every login;
2. enrols ``--users`` users in bulk (:mod:`bench.setup_users`; reused on the next run of the
   same scenario);
3. starts ``python -m mfa_radius serve`` as its own process (and redis-server and FreeRADIUS
   when needed, whose CPU shares are reported as "other CPU");
4. runs the generator (:mod:`bench.loadgen`) at (a) maximum rate, closed loop, then
   (b) a fixed offered rate, open loop, half the measured maximum (or ``--rate``), waiting
   between the two for a fresh TOTP time step so that no (user, step) is used twice;
5. optionally profiles the proxy with py-spy during the maximum-rate run (``--profile``);
6. stops everything (SIGTERM, bounded waits) and writes a markdown row per run and a JSON
   file under ``bench/results/`` (git-ignored).

Usage::

    python -m bench.run --scenario memory-none --duration 20 --users 100000 [--rate N]
    python -m bench.run --scenario redis-upstream --duration 20 --users 100000
    python -m bench.run --scenario memory-sms --duration 20 --users 100000
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import freeradius, loadgen
from bench import profile as profile_summary
from bench.setup_users import DEFAULT_PASSWORD, create_users
from mfa_radius import config
from mfa_radius.adapters.aesgcm_keyring import Keyring

RESULTS = Path(__file__).resolve().parent / "results"
"""Where results and the scenarios' working folders go (git-ignored)."""

SECRET = "bench-shared-secret-0123456789"  # a loopback benchmark's NAS secret
SCENARIOS = (
    "memory-none",
    "memory-local",
    "memory-upstream",
    "redis-none",
    "redis-local",
    "redis-upstream",
    "memory-sms",
    "redis-sms",
)
TWILIO_ACCOUNT = "AC" + "be4c" * 8  # the fake's only account (not a real one)
TWILIO_TOKEN = "bench-twilio-auth-token-0123456789"  # a loopback benchmark's fake token
SMS_SENDER = "+12025550143"
SMS_LIMITS = """[limits]
# Raised for the benchmark: the production defaults (5 sends per user an hour, a 20 s
# cool-down, 10,000 a day) would cap the rate long before the proxy does.
user_sends = 1000000
user_window = 3600.0
number_sends = 1000000
number_window = 3600.0
country_sends = 1000000000
country_window = 3600.0
daily_sends = 1000000000
cooldown = 0.0
"""
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """A store, a primary backend and the second factor (``totp`` or ``sms``)."""

    name: str
    store: str
    primary: str
    factor: str = "totp"


def parse_scenario(name: str) -> Scenario:
    """``memory-none`` -> Scenario(store="memory", primary="none", factor="totp").

    ``memory-sms`` -> Scenario(store="memory", primary="none", factor="sms").
    """
    store, _, primary = name.partition("-")
    if primary == "sms":
        return Scenario(name=name, store=store, primary="none", factor="sms")
    return Scenario(name=name, store=store, primary=primary)


@dataclass(frozen=True, slots=True)
class TwilioFake:
    """The running Twilio fake (:mod:`bench.twilio_fake`)."""

    port: int
    pid: int

    @property
    def base_url(self) -> str:
        """What the proxy's ``[twilio] api_base_url`` is set to."""
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, int]:
        """The fake's counters (``GET /stats``)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
        try:
            conn.request("GET", "/stats")
            response = conn.getresponse()
            if response.status != 200:
                raise RuntimeError(f"the Twilio fake answered /stats with {response.status}")
            data: dict[str, int] = json.loads(response.read())
        finally:
            conn.close()
        return data

    def messages(self) -> float:
        """Messages received so far (a rate source for :func:`loadgen.run_load`)."""
        return float(self.stats()["messages"])


def free_port(kind: socket.SocketKind) -> int:
    """A port the kernel considers free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def home_server_section(home: freeradius.FreeRadius) -> str:
    """The ``[[home_server]]`` of the benchmark FreeRADIUS (replies must be signed)."""
    return f"""[[home_server]]
name = "bench-freeradius"
ipaddr = "{home.host}"
port = {home.port}
secret = "{home.secret}"
response_window = 3.0
require_message_authenticator = true
"""


def sms_sections(directory: Path, twilio: TwilioFake) -> str:
    """``[twilio]``, ``[delivery]`` and the raised ``[limits]`` of the ``sms`` scenarios."""
    (directory / "twilio.token").write_text(TWILIO_TOKEN + "\n", encoding="utf-8")
    (directory / "twilio.token").chmod(0o600)
    return f"""[twilio]
account_sid = "{TWILIO_ACCOUNT}"
auth_token_file = "twilio.token"
api_base_url = "{twilio.base_url}"

[delivery]
sender = "twilio"
timeout = 3.0

{SMS_LIMITS}"""


def write_config(
    directory: Path,
    *,
    port: int,
    scenario: Scenario,
    redis_url: str,
    log_level: str,
    home: freeradius.FreeRadius | None = None,
    twilio: TwilioFake | None = None,
) -> Path:
    """Write the proxy configuration of a scenario (the key file is kept across runs).

    ``home`` is the upstream FreeRADIUS, required by the ``upstream`` primary; ``twilio``
    the Twilio fake, required by the ``sms`` factor.
    """
    if (scenario.primary == "upstream") != (home is not None):
        raise ValueError("the upstream primary needs a home server, and only it")
    if (scenario.factor == "sms") != (twilio is not None):
        raise ValueError("the sms factor needs the Twilio fake, and only it")
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "enrolment.key"
    if not key_file.exists():
        key_file.write_text(Keyring.generate_line("bench1") + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    redis = f'[redis]\nurl = "{redis_url}"\n' if scenario.store == "redis" else ""
    upstream = home_server_section(home) if home is not None else ""
    decision = f'mode = "challenge"\nprimary = "{scenario.primary}"\nresponse_window = 5.0\n'
    sms = ""
    if twilio is not None:
        decision += f'factors = ["sms"]\nsms_sender = "{SMS_SENDER}"\norganisation = "Bench Corp"\n'
        sms = sms_sections(directory, twilio)
    if "profile" in config.Config.model_fields:
        # Decision settings live in a [profile.NAME] section that clients name.
        client_decision, profile = 'profile = "bench"\n', f"[profile.bench]\n{decision}"
    else:
        client_decision, profile = decision, ""
    text = f"""# Written by bench/run.py for scenario {scenario.name}.
[server]
listen = ["127.0.0.1:{port}"]
node_name = "bench"

[[client]]
name = "bench-nas"
ipaddr = ["127.0.0.1/32"]
secret = "{SECRET}"
require_message_authenticator = "yes"
{client_decision}
{profile}
[store]
backend = "{scenario.store}"

{redis}
{upstream}
{sms}
[enrolment]
database = "sqlite:///enrolment.db"
key_file = "enrolment.key"

[log]
level = "{log_level}"
format = "json"
"""
    path = directory / "radius.conf"
    path.write_text(text, encoding="utf-8")
    return path


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout:.0f} s")


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=5)


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[tuple[str, int]]:
    """A throw-away redis-server on a free loopback port; yields (url, pid)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port(socket.SOCK_STREAM)
    log = (directory / "redis.log").open("ab")
    proc = subprocess.Popen(
        [
            binary,
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(directory)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        _wait_for(lambda: _redis_ping(port) or proc.poll() is not None, 10, "redis did not start")
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: see {directory / 'redis.log'}")
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        _stop(proc)


@contextlib.contextmanager
def twilio_fake(directory: Path, lifetime: float) -> Iterator[TwilioFake]:
    """The Twilio fake as its own process on a free loopback port (it binds port 0).

    ``lifetime`` bounds it should the runner die without stopping it (it also exits when
    its parent goes away).
    """
    token_file = directory / "twilio.token"
    token_file.write_text(TWILIO_TOKEN + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    port_file = directory / "twilio.port"
    port_file.unlink(missing_ok=True)
    log = (directory / "twilio.log").open("ab")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "bench.twilio_fake"),
            *("--account-sid", TWILIO_ACCOUNT, "--auth-token-file", str(token_file)),
            *("--port-file", str(port_file), "--lifetime", str(int(lifetime))),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the Twilio fake exited: see {directory / 'twilio.log'}")
            if not port_file.exists():
                return False
            fake = TwilioFake(port=int(port_file.read_text(encoding="ascii")), pid=proc.pid)
            try:
                fake.stats()
            except OSError:
                return False
            return True

        _wait_for(ready, 15, "the Twilio fake did not start")
        yield TwilioFake(port=int(port_file.read_text(encoding="ascii")), pid=proc.pid)
    finally:
        _stop(proc)


@contextlib.contextmanager
def proxy(config_path: Path, log_path: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m mfa_radius serve`` with its output (the audit log) in ``log_path``.

    Readiness is a Status-Server answer on ``port`` rather than the ``server_started`` log
    line, so that the log level can be raised to compare the audit log's cost.
    """
    entry = ["-m", "mfa_radius"]
    log_path.write_bytes(b"")
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, *entry, "serve", "-c", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "0"},
    )
    log.close()

    def started() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the proxy exited: {log_path.read_text()[-3000:]}")
        return freeradius.status_server_answers(port, SECRET)

    try:
        _wait_for(started, START_TIMEOUT, "the proxy did not start")
        yield proc
    finally:
        code = _stop(proc)
        if code not in (0, -signal.SIGTERM):
            print(f"warning: the proxy exited with {code}; see {log_path}", file=sys.stderr)


def server_counters(log_path: Path) -> dict[str, Any]:
    """The counters of the proxy's ``server_stopped`` line, and the log's size per line."""
    counters: dict[str, Any] = {}
    lines = size = 0
    with log_path.open("rb") as handle:
        for raw in handle:
            lines += 1
            size += len(raw)
            if b'"server_stopped"' in raw:
                with contextlib.suppress(ValueError):
                    counters = json.loads(raw).get("counters", {})
    return {"counters": counters, "log_lines": lines, "log_bytes": size}


def check_csv_password(users_csv: Path, password: str, *, phones: bool = False) -> None:
    """Fail early when a reused users CSV carries another password than the primary checks.

    With ``phones`` the users must also have a phone number (the ``sms`` scenarios).
    """
    with users_csv.open(encoding="utf-8", newline="") as handle:
        first = next(csv.reader(handle), None)
    if first is None or first[1] != password:
        raise RuntimeError(
            f"{users_csv}: the users' password is not the one the primary expects; "
            "delete the scenario's working folder to recreate the users"
        )
    if phones and (len(first) < 4 or not first[3]):
        raise RuntimeError(
            f"{users_csv}: the users have no phone number; "
            "delete the scenario's working folder to recreate the users"
        )


def wait_for_step(after: int, time_step: int = 30) -> None:
    """Sleep until the TOTP step ``after + 1`` has begun (at most one step)."""
    target = (after + 1) * time_step + 0.05
    time.sleep(max(0.0, min(target - time.time(), time_step + 1.0)))


def start_profiler(
    pid: int, seconds: float, out: Path, *, gil_only: bool
) -> subprocess.Popen[bytes] | None:
    """Start ``py-spy record`` (raw collapsed stacks, non-blocking sampling) on ``pid``.

    ``gil_only`` samples only the thread holding the GIL: the Python work, whichever thread
    does it, without the time worker threads spend inside SQLite's C code or argon2.
    """
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(binary).exists():
        print("py-spy not found; skipping the profile", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            binary,
            *("record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200"),
            *("--format", "raw", "--nonblocking", "--output", str(out)),
            *(("--gil",) if gil_only else ()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; exits 1 when a run had failed logins."""
    parser = argparse.ArgumentParser(description="Run one benchmark scenario end to end.")
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rate", type=float, help="only an open-loop run at this rate")
    parser.add_argument("--no-half", action="store_true", help="skip the half-load run")
    parser.add_argument("--concurrency", type=int, help="closed-loop in-flight logins")
    parser.add_argument("--processes", type=int, default=1, help="generator processes")
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    parser.add_argument(
        "--profile",
        choices=("all", "gil"),
        help="py-spy the max-rate run: every thread, or only the GIL holder",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS,
        help="where the results, the table and the working folders go (default bench/results)",
    )
    args = parser.parse_args(argv)
    results_dir: Path = args.results_dir

    scenario = parse_scenario(args.scenario)
    # argon2id (local) is CPU-bound: a few logins in flight saturate it; the others wait on I/O.
    concurrency = args.concurrency or (8 if scenario.primary == "local" else 256)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    label = scenario.name + ("" if args.log_level == "info" else f"-log-{args.log_level}")
    work = results_dir / "work" / f"{scenario.name}-{args.users}"
    work.mkdir(parents=True, exist_ok=True)
    users_csv = work / "users.csv"
    reports: list[tuple[str, loadgen.RunReport]] = []
    extra: dict[str, Any] = {}
    status = 0

    with contextlib.ExitStack() as stack:
        redis_url, watch = "", {}
        if scenario.store == "redis":
            redis_url, redis_pid = stack.enter_context(redis_server(work))
            watch["redis"] = redis_pid
        home = None
        password = DEFAULT_PASSWORD
        if scenario.primary == "upstream":
            home = stack.enter_context(freeradius.freeradius_server(work / "freeradius"))
            watch["freeradius"] = home.pid
            password = freeradius.PASSWORD
            extra["freeradius_log"] = str(home.log_path)
        sms = scenario.factor == "sms"
        twilio = None
        rate_sources: dict[str, Any] = {}
        if sms:
            budget = 600.0 + 3 * (args.warmup + args.duration + 30.0)
            twilio = stack.enter_context(twilio_fake(work, budget))
            watch["twilio"] = twilio.pid
            rate_sources["texts"] = twilio.messages
            extra["limits"] = "raised for the benchmark (see SMS_LIMITS in bench/run.py)"
            print("sms: [limits] raised for the benchmark (no cool-down, 1e6 sends/user/hour)")
        port = free_port(socket.SOCK_DGRAM)
        config_path = write_config(
            work,
            port=port,
            scenario=scenario,
            redis_url=redis_url,
            log_level=args.log_level,
            home=home,
            twilio=twilio,
        )
        setup = create_users(config_path, args.users, users_csv, password=password, phones=sms)
        check_csv_password(users_csv, password, phones=sms)
        print(f"users: {setup.users} ({setup.created} created in {setup.seconds:.1f} s)")
        extra["setup_seconds"] = round(setup.seconds, 2)
        log_path = work / "server.log"
        server = stack.enter_context(proxy(config_path, log_path, port))

        def settings(rate: float, min_step: int) -> loadgen.LoadSettings:
            return loadgen.LoadSettings(
                host="127.0.0.1",
                port=port,
                secret=SECRET.encode(),
                users_file=users_csv,
                duration=args.duration,
                warmup=args.warmup,
                concurrency=concurrency if not rate else max(4096, concurrency),
                rate=rate,
                processes=args.processes,
                min_step=min_step,
                codes_port=twilio.port if twilio is not None else 0,
            )

        last_step = 0
        half_rate = args.rate
        if args.rate is None:
            profiler = None
            raw = results_dir / f"{label}-{stamp}-pyspy-{args.profile}.txt"
            if args.profile:
                profiler = start_profiler(
                    server.pid,
                    args.warmup + args.duration - 1,
                    raw,
                    gil_only=args.profile == "gil",
                )
            report = loadgen.run_load(
                settings(0.0, 0),
                server_pid=server.pid,
                other_pids=watch,
                rate_sources=rate_sources,
            )
            reports.append(("max", report))
            # A texted code is good for its own challenge only: no TOTP step to wait for.
            last_step = 0 if sms else report.counts["last_step"]
            half_rate = round(report.logins_per_s / 2)
            if profiler is not None:
                profiler.wait(timeout=args.duration + 60)
                if raw.exists():
                    text = profile_summary.summary(profile_summary.parse(raw), 40)
                    (results_dir / f"{label}-{stamp}-profile.md").write_text(text, encoding="utf-8")
                    extra["profile"] = str(raw)
                    print(text)
        if half_rate and (args.rate is not None or not args.no_half):
            if last_step:
                wait_for_step(last_step)
            report = loadgen.run_load(
                settings(float(half_rate), last_step + 1 if last_step else 0),
                server_pid=server.pid,
                other_pids=watch,
                rate_sources=rate_sources,
            )
            reports.append(("open", report))
    extra.update(server_counters(log_path))

    print()
    print(loadgen.TABLE_HEADER)
    for _, report in reports:
        print(loadgen.table_row(label, report))
        if sms:
            c = report.counts
            print(
                f"  sms: texts {report.other_rates.get('texts', 0.0):,.0f}/s, twilio fake CPU "
                f"{report.other_cpu_pct.get('twilio', 0.0):.0f}%, code fetch p50/p99 "
                f"{report.fetch_p50_ms:.2f} / {report.fetch_p99_ms:.2f} ms "
                f"(in the generator's CPU), fetches {c['code_fetches']:,}, "
                f"re-polls {c['code_refetches']}, fetch timeouts {c['code_timeouts']}, "
                f"fetch errors {c['code_errors']}"
            )
        if not report.ok():
            status = 1
            print(f"  counts: {json.dumps(report.counts)} errors: {report.errors}")
    print(f"server: {json.dumps(extra.get('counters', {}))}")
    out = results_dir / f"{label}-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "scenario": scenario.name,
                "log_level": args.log_level,
                "users": args.users,
                "cpus": os.cpu_count(),
                "runs": [{"kind": kind, **loadgen.report_json(r)} for kind, r in reports],
                **extra,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    with (results_dir / "results.md").open("a", encoding="utf-8") as table:
        for _, report in reports:
            table.write(loadgen.table_row(label, report) + "\n")
    print(f"results: {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
