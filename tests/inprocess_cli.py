"""`tally` commands run in the test's own process: `node.cli.main.main(argv)` with stdout and stderr captured.

A `tally` process costs ~0.6 s of CPU to start (the interpreter and our imports); in process a command costs
what it does. The process boundary stays where it is the point (`tally run` as a server, `kill -9`, the
demo): `run_cli` refuses `run` and `demo`, which are started as processes (`tally_process`,
`running_nodes.spawn`).

Each call checks that the command left the process as it found it: no thread it started still running, the same
working folder, environment, root logger, signal handlers and garbage collector thresholds. A command that
keeps state between calls fails here rather than making tests depend on their order.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from node.cli.main import main

#: Commands that are a process of their own: a server until a signal, or a supervisor of processes.
PROCESS_COMMANDS = frozenset({"run", "demo"})
TIMEOUT_S = 120.0  # generous: a command takes well under a second


def _process_state() -> dict[str, Any]:
    root = logging.getLogger()
    return {
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "root logger": (root.level, list(root.handlers)),
        "signals": [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)],
        "gc thresholds": gc.get_threshold(),
        "stdio": (sys.stdin, sys.stdout, sys.stderr),
    }


#: names the threads a test itself starts beside a command (a proxy's, say): not the command's
TEST_THREAD_PREFIX = "test-"


def started(before: set[threading.Thread], hosted: tuple[str, ...] = ()) -> set[threading.Thread]:
    """The threads running now that were not `before`, less the test's own and those named by `hosted`."""
    return {t for t in set(threading.enumerate()) - before if not t.name.startswith((TEST_THREAD_PREFIX, *hosted))}


def run_cli(home: Path, *args: str, timeout: float = TIMEOUT_S,
            hosted: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`tally --home HOME ARGS…` in this process: its exit code, stdout and stderr, as `subprocess.run` would
    give them (never raises on the exit code). An exception the CLI does not turn into an exit code fails the
    test with its traceback (a `tally` process would print it and exit 1).

    The command runs on a thread of its own, so that a test with a running event loop can call it and a hung
    command fails the test after `timeout` s instead of hanging it. `hosted`: name prefixes of threads that a node
    the test runs in this same process starts while it answers the command (its store's, its loop's), which are
    not the command's."""
    command = [a for a in args if not a.startswith("-")][:1]
    assert not PROCESS_COMMANDS.intersection(command), f"`tally {args[0]}` is a process: start it as one"
    argv = ["--home", str(home), *args]
    out, err = io.StringIO(), io.StringIO()
    outcome: list[int | BaseException] = []

    def call() -> None:
        try:
            outcome.append(main(argv))
        except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
            outcome.append(exc.code if isinstance(exc.code, int) else 1)
        except BaseException as exc:  # re-raised on the test's thread below
            outcome.append(exc)

    before = _process_state()
    threads = set(threading.enumerate())
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        worker = threading.Thread(target=call, name="tally-cli", daemon=True)
        worker.start()
        worker.join(timeout)
    assert not worker.is_alive(), f"`tally {' '.join(args)}` did not finish within {timeout} s"
    (result,) = outcome
    if isinstance(result, BaseException):
        raise result
    for thread in started(threads, hosted):  # e.g. a store's thread, ending as it closes
        thread.join(timeout)
    after = _process_state()
    changed = sorted(name for name in before if before[name] != after[name])
    if started(threads, hosted):  # (a thread of an earlier test may end meanwhile: not ours)
        changed.append(f"threads left running: {sorted(t.name for t in started(threads, hosted))}")
    assert not changed, f"`tally {' '.join(args)}` left the process changed: {changed}: {before} -> {after}"
    return subprocess.CompletedProcess(["tally", *argv], result, out.getvalue(), err.getvalue())
