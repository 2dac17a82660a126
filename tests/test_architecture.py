"""The two pure layers stay pure: no I/O, clock, randomness or logging in core/ and radius/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mfa_radius"
PURE = sorted([*(PACKAGE / "core").rglob("*.py"), *(PACKAGE / "radius").rglob("*.py")])
FORBIDDEN = {
    "asyncio",
    "socket",
    "time",
    "random",
    "secrets",
    "logging",
    "structlog",
    "subprocess",
    "threading",
    "os",
    "selectors",
    "ssl",
    "urllib",
    "http",
    "redis",
    "twilio",
    "ldap3",
    "sqlalchemy",
}
FILE_READERS = {"dictionary.py"}  # reads the dictionary files once, at start-up


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", PURE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pure_module_imports_no_io(path: Path) -> None:
    """Modules of core/ and radius/ import no I/O, clock, randomness or logging module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert _imports(tree) & FORBIDDEN == set()


@pytest.mark.parametrize("path", PURE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pure_module_never_awaits(path: Path) -> None:
    """Modules of core/ and radius/ define no coroutine: they return values."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.Await)]


@pytest.mark.parametrize(
    "path", [p for p in PURE if p.name not in FILE_READERS], ids=lambda p: p.name
)
def test_pure_module_opens_no_file(path: Path) -> None:
    """Apart from the dictionary loader, nothing in core/ and radius/ calls open()."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "open"
    ]
    assert calls == []


def test_pure_layers_are_found() -> None:
    """The checks above really look at the modules (a moved package would silence them)."""
    assert {p.name for p in PURE} >= {"login.py", "totp.py", "otp.py", "codec.py", "endpoint.py"}
