"""protocol/ stays sans-IO: no I/O modules, no clock, no randomness of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"
FORBIDDEN_MODULES = frozenset({
    "asyncio", "socket", "sqlite3", "aiosqlite", "aiohttp", "zeroconf", "time", "random", "threading",
    "subprocess", "os",
})
#: Calls that read a clock or draw randomness, by dotted name (as written or via an alias).
FORBIDDEN_CALLS = frozenset({
    "datetime.now", "datetime.datetime.now", "datetime.utcnow", "datetime.datetime.utcnow",
    "datetime.today", "datetime.datetime.today", "date.today", "datetime.date.today",
    "os.urandom", "secrets.token_bytes", "uuid.uuid4",
})


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def violations(source: str) -> list[str]:
    """Every forbidden import or call in `source`, as text."""
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> dotted origin, for `from datetime import datetime as dt`
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"import {alias.name}")
                top = alias.name.split(".")[0]
                aliases[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"from {node.module} import …")
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name is None:
                continue
            head, _, rest = name.partition(".")
            resolved = aliases.get(head, head) + (f".{rest}" if rest else "")
            if name in FORBIDDEN_CALLS or resolved in FORBIDDEN_CALLS:
                found.append(f"call {name}()")
            if name in ("__import__", "importlib.import_module"):
                found.append(f"dynamic import {name}()")
    return found


def protocol_files() -> list[Path]:
    files = sorted(PROTOCOL.glob("*.py"))
    assert len(files) >= 10, f"expected the protocol package at {PROTOCOL}"
    return files


@pytest.mark.parametrize("path", protocol_files(), ids=lambda p: p.name)
def test_protocol_module_is_pure(path: Path) -> None:
    assert violations(path.read_text()) == []


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import os",
        "import os.path",
        "import time as clock",
        "from socket import socket",
        "from sqlite3 import connect",
        "import aiosqlite",
        "from aiohttp import web",
        "import zeroconf",
        "from random import randbytes",
        "import threading",
        "import subprocess",
        "from os import urandom",
        "from datetime import datetime\nx = datetime.now()",
        "import datetime\nx = datetime.datetime.now()",
        "from datetime import datetime as dt\nx = dt.now()",
        "import datetime as d\nx = d.datetime.utcnow()",
        "def f():\n    import time\n    return time.time()",
        "x = __import__('socket')",
    ],
)
def test_checker_catches(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize(
    "source",
    ["import hashlib", "from datetime import datetime\nx = datetime.fromtimestamp(0)", "from . import time_utils",
     "import cbor2", "from dataclasses import dataclass", "x = now()"],
)
def test_checker_allows(source: str) -> None:
    assert violations(source) == []
