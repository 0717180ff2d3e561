"""Shared fixtures: run the real `tally` command against real homes."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

TallyRunner = Callable[..., subprocess.CompletedProcess[str]]


def tally_executable() -> str:
    """The installed console script, next to this interpreter."""
    candidate = Path(sys.executable).with_name("tally")
    found = str(candidate) if candidate.exists() else shutil.which("tally")
    if not found:
        raise RuntimeError("the `tally` console script is not installed (pip install -e '.[test]')")
    return found


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def tally(home: Path) -> TallyRunner:
    """Run `tally --home <home> ARGS…`; returns the completed process (never raises on exit code)."""
    exe = tally_executable()

    def run(
        *args: str, home_dir: Path | None = None, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
        return subprocess.run(
            [exe, "--home", str(home_dir or home), *args],
            capture_output=True, text=True, timeout=timeout, env=env, input=input,
        )

    return run


def last_line(out: str) -> str:
    lines = out.strip().splitlines()
    assert lines, "expected output on stdout"
    return lines[-1]


@pytest.fixture(scope="session")
def script() -> Callable[[str], ModuleType]:
    """Load `scripts/NAME.py` as a module (scripts/ is not a package): tests check what scripts write."""
    root = Path(__file__).resolve().parent.parent

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, root / "scripts" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
