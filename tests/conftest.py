"""Shared fixtures: run the real `tally` command against real homes (in process, or as a process)."""

from __future__ import annotations

import compileall
import hashlib
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings
from inprocess_cli import run_cli

from node.store import snapshots
from protocol import CID, Entry
from protocol.fold import LedgerFold
from protocol.state import LedgerState, compute_state

TallyRunner = Callable[..., subprocess.CompletedProcess[str]]

# Hypothesis checks what the code computes, never how fast: on a loaded two-core machine its timing checks
# (slow data generation, the 200 ms deadline per example) failed tests whose properties held (seen: a rules
# strategy "only generated 6 valid inputs after 1.01 seconds" at load 10). Examples and seeds are unchanged.
settings.register_profile("tally", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("tally")


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
    """Run `tally --home <home> ARGS…` in this process (tests/inprocess_cli.py); returns what `subprocess.run`
    would (never raises on the exit code)."""

    def run(*args: str, home_dir: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_cli(home_dir or home, *args, timeout=timeout)

    return run


@pytest.fixture
def tally_process(home: Path) -> TallyRunner:
    """Run the installed `tally --home <home> ARGS…` as a process of its own, for what only a process shows
    (`tally run`'s refusals, its exit code as the shell sees it)."""
    exe = tally_executable()

    def run(*args: str, home_dir: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
        return subprocess.run(
            [exe, "--home", str(home_dir or home), *args], capture_output=True, text=True, timeout=timeout, env=env
        )

    return run


def last_line(out: str) -> str:
    lines = out.strip().splitlines()
    assert lines, "expected output on stdout"
    return lines[-1]


#: pytest-xdist workers: more than a small machine's two cores, as many tests wait on nodes
WORKERS = 3


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """The suite on WORKERS pytest-xdist processes unless told otherwise (`-n N`; `-n 0`, `--pdb`, `-p no:xdist`
    or no xdist installed: this one process), each test file on one worker so that a module's fixtures (a lab, a
    browser, a cluster of nodes) are made once, files handed out in collection order (see below). Set here, not
    in pyproject's addopts, where `-n` would break a run without xdist. (xdist's own hook runs after this one.)"""
    if not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput"):
        return
    if config.option.numprocesses is None and not config.getoption("usepdb", False):
        config.option.numprocesses = WORKERS
        if config.option.dist == "no":
            config.option.dist = "loadfile"
            config.option.loadscopereorder = False


def pytest_configure(config: pytest.Config) -> None:
    """Where the environment says not to write bytecode (PYTHONDONTWRITEBYTECODE), every Python process the suite
    starts (its workers, each `tally run`, `tally` command and verify worker: hundreds) would compile node/,
    protocol/ and what it imports of tests/ again, ~0.3 s of CPU each: their bytecode is written once, here, where
    Python keeps it (`__pycache__`, which git ignores); a file changed since is compiled again, as always."""
    if sys.dont_write_bytecode and not hasattr(config, "workerinput"):
        root = Path(__file__).resolve().parent.parent
        for package in ("node", "protocol", "tests"):
            compileall.compile_dir(root / package, quiet=2)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files that hold a `slow` test first, each file's tests in their order: pytest-xdist hands whole files
    to its workers in this order (pyproject's addopts), so the longest start at once instead of trailing at the
    end while the other workers sit idle."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


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


# ---- every ledger the state tests build is folded incrementally too ------------------------------------------
# The state, governance, distribution and keys tests' `compute_state` is wrapped so that each state they
# compute is also built by a LedgerFold (protocol/fold.py) fed the same entries in the same order, in
# batches of varied sizes (one in four saved and read back once midway, as a restarted node reads it), and the
# two must be equal, digest and every field; one state in four is also saved as a snapshot and read back.
# The tests are unchanged.

FOLDED_MODULES = frozenset({"test_state", "test_governance", "test_distribution", "test_keys"})
# The same entries in the same order are folded once per process: what follows is a function of them alone (its
# batches are seeded by their number), so folding them again would check nothing new; the tests ask for many
# such repeats (Hypothesis's examples share their beginnings, the exhaustive orders their prefixes). The state
# is computed every time, and must be the one computed before.
_FOLDED: dict[bytes, bytes] = {}  # hash of (ledger, entries in order, forks) -> the state's digest


def folded(genesis: Entry, entries: Iterable[Entry], forks: Mapping[bytes, int] | None = None) -> LedgerState:
    arrived = list(entries)
    reference = compute_state(genesis, arrived, forks)
    seen = hashlib.blake2b(genesis.id.raw, digest_size=16)
    for entry in arrived:  # an id names the header; its payload may be erased, or absent as a test made it
        payload = entry.payload_raw
        seen.update(b"%d %d %d %d " % (len(entry.id.raw), payload is None, entry.body is None, len(payload or b"")))
        seen.update(entry.id.raw + (payload or b""))
    for author, seq in sorted((forks or {}).items()):
        seen.update(b"fork" + author + seq.to_bytes(8, "big"))
    at = seen.digest()
    if at in _FOLDED:
        assert _FOLDED[at] == reference.digest
        return reference
    fold = LedgerFold(genesis, forks)
    rnd = random.Random(len(arrived))  # batches vary from ledger to ledger, the same on every run
    start = 0
    # one ledger in four: the state tests compute thousands, and pickling each costs more than folding it
    saved_at = rnd.randrange(len(arrived) + 1) if rnd.random() < 0.25 else len(arrived) + 1
    while start < len(arrived):
        size = rnd.choice((1, 1, 2, 5, len(arrived)))
        fold.add(arrived[start : start + size])
        start += size
        if start >= saved_at:  # once, midway: the fold saved and read back, as a restarted node does, goes on
            fold, saved_at = read_back(fold, genesis.id), len(arrived) + 1
    assert fold.state() == reference
    if rnd.random() < 0.25:  # one ledger in four, as above: the state tests compute thousands
        # and read back from a snapshot as a restarted node reads it (node/store/snapshots.py): the same state
        kept = snapshots.make(reference, forks or {})
        restored, why = snapshots.restore(kept, kept.coverage, genesis.id)
        assert restored == reference, why
    _FOLDED[at] = reference.digest  # only once every check passed: a failing example fails again when replayed
    return reference


def read_back(fold: LedgerFold, ledger: CID) -> LedgerFold:
    """`fold` pickled into parts and read back (node/store/snapshots.py encode_fold, decode_fold), checked."""
    parts: list[bytes] = []
    ref = snapshots.encode_fold(fold, fold.state().digest, b"token", lambda _, part: parts.append(part),
                                threading.Event())
    back, why = snapshots.decode_fold(ref, iter(parts), ledger)
    assert back is not None, why
    return back


@pytest.fixture(autouse=True)
def fold_every_state(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = request.module
    if module.__name__ in FOLDED_MODULES and getattr(module, "compute_state", None) is compute_state:
        monkeypatch.setattr(module, "compute_state", folded)
    yield
