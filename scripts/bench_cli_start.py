"""Benchmark: what starting the `tally` command costs in CPU (user + system) for commands that do little.

Runs `tally --help`, `tally id` and `tally ledger list` (no node running, a new home) RUNS times each as child
processes and prints the median and the lowest user + system CPU of each. `--repo DIR` runs another checkout's
code (e.g. an older commit in a worktree) with this Python, to compare. Prints figures, asserts nothing.

    python scripts/bench_cli_start.py [--runs 10] [--repo DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (("--help",), ("id",), ("ledger", "list"))
# The `tally` entry point, run from the checkout's folder (its node/ comes first on sys.path)
ENTRY = "import sys; from node.cli.main import script; sys.argv[0] = 'tally'; script()"


def cpu_of(repo: Path, home: Path, argv: tuple[str, ...]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", ENTRY, *argv], cwd=repo, env={**os.environ, "TALLY_HOME": str(home)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout whose code runs (default: this one)")
    args = parser.parse_args()
    repo = args.repo.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        cpu_of(repo, home, ("init",))
        print(f"repo {repo}  runs {args.runs}  load {os.getloadavg()[0]:.1f}")
        for argv in COMMANDS:
            times = [cpu_of(repo, home, argv) for _ in range(args.runs)]
            print(f"tally {' '.join(argv):<12} median {statistics.median(times):.3f} s  lowest {min(times):.3f} s"
                  " (user + sys CPU)")
        print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
