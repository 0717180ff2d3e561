"""ruff over the tree and mypy --strict over protocol/ and node/: part of the default suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_clean() -> None:
    r = run("ruff", "check", "protocol", "node", "scripts", "tests")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_clean() -> None:
    r = run("mypy", "--strict", "protocol", "node")
    assert r.returncode == 0, r.stdout + r.stderr
