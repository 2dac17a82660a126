"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) into top-cost tables.

py-spy's flame graphs answer "where" visually; a review of a hot path needs numbers that can
be quoted and compared between runs: the share of samples in which each function is on the
stack (inclusive) and at the top of it (self). Functions are keyed by name and file, without
the line, so one function's lines add up.

Usage::

    python -m bench.profile server.raw.txt [--top 30]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("structlog contextvars (bind/clear/merge)", ("structlog/contextvars",)),
    ("audit log (structlog processors, JSON, write)", ("structlog", "orjson", "logs.py")),
    ("asyncio.timeout deadlines", ("asyncio/timeouts",)),
    (
        "enrolment lookup (SQLAlchemy, aiosqlite, AES-GCM)",
        ("aiosqlite", "sqlalchemy", "sql_enrolments", "batched_lookup", "aesgcm_keyring"),
    ),
    ("argon2 primary", ("argon2",)),
    ("redis client", ("redis",)),
    ("memory store", ("memory_store",)),
    ("RADIUS codec + endpoint (MD5/HMAC, duplicate cache)", ("codec.py", "hmac", "endpoint.py")),
    ("TOTP check", ("otp.py",)),
    ("socket sendto", ("RadiusServer._send ",)),
)
"""Component -> substrings of a frame; a sample goes to the first component (checked from
the innermost frame outwards) that one of its frames matches, else to "orchestration"."""


def component(keys: list[str]) -> str:
    """The component a sample's stack (outermost first) is charged to."""
    if keys and keys[-1].startswith(("Runner.run ", "run (uvloop")):
        # Time in uvloop's C code under the loop's Python entry point: recv, timers, wakeups.
        return "event loop (uvloop C code: recv, timers, task steps)"
    for key in reversed(keys):
        for name, needles in COMPONENTS:
            if any(needle in key for needle in needles):
                return name
    return "orchestration (server, service, flow, asyncio tasks)"


@dataclass(frozen=True, slots=True)
class Profile:
    """Sample counts of one profile.

    Attributes:
        samples: total samples.
        idle: samples in which the thread was idle (waiting in the event loop's poll).
        inclusive: function -> samples with it anywhere on the stack.
        self_time: function -> samples with it at the top of the stack.
        components: component -> samples (see :data:`COMPONENTS`).
    """

    samples: int
    idle: int
    inclusive: Counter[str]
    self_time: Counter[str]
    components: Counter[str]


def _key(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match.group("file")
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match.group('func')} ({file})"


def _is_idle(frames: list[str]) -> bool:
    """A sample waiting for I/O: the event loop's poll or a worker thread's wait."""
    top = frames[-1] if frames else ""
    return any(word in top for word in ("select (", "poll (", "wait (", "_worker (", "run_forever"))


def parse(path: Path) -> Profile:
    """Read a collapsed-stack file (``frame;frame;... count`` per line)."""
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    components: Counter[str] = Counter()
    samples = idle = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        samples += count
        if _is_idle(frames):
            idle += count
        keys = [_key(f) for f in frames]
        for key in set(keys):
            inclusive[key] += count
        if keys:
            self_time[keys[-1]] += count
        components[component(keys)] += count
    return Profile(
        samples=samples,
        idle=idle,
        inclusive=inclusive,
        self_time=self_time,
        components=components,
    )


def summary(profile: Profile, top: int = 30) -> str:
    """Markdown tables of the top functions by self and inclusive share of all samples."""
    total = profile.samples or 1
    lines = [
        f"samples: {profile.samples} (idle/waiting: {100.0 * profile.idle / total:.1f}%)",
        "",
        "| component % | component |",
        "|---:|---|",
        *(f"| {100.0 * n / total:.1f} | {name} |" for name, n in profile.components.most_common()),
        "",
        "| self % | function |",
        "|---:|---|",
    ]
    lines += [
        f"| {100.0 * n / total:.1f} | `{name}` |" for name, n in profile.self_time.most_common(top)
    ]
    lines += ["", "| inclusive % | function |", "|---:|---|"]
    lines += [
        f"| {100.0 * n / total:.1f} | `{name}` |" for name, n in profile.inclusive.most_common(top)
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Summarise a py-spy raw profile.")
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    print(summary(parse(args.raw), args.top))


if __name__ == "__main__":
    main()
